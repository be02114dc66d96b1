//! The JSON payloads on the locker topics (see docs/mqtt.md), parsed
//! strictly: a size cap, a schema version, known fields only. Every parser
//! returns a typed error for any input; none panics (a property test feeds
//! them arbitrary bytes).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest payload accepted on any locker topic.
pub const MAX_PAYLOAD: usize = 4096;
/// The schema version this server speaks.
pub const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("unknown schema version {0}")]
    UnknownVersion(u64),
    #[error("payload does not match its schema: {0}")]
    Invalid(String),
    #[error("topic {0:?} is not a locker topic")]
    BadTopic(String),
}

impl PayloadError {
    /// The metrics label for this rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::TooLarge(_) => "mqtt_oversize",
            PayloadError::NotJson(_) => "mqtt_not_json",
            PayloadError::UnknownVersion(_) => "mqtt_unknown_version",
            PayloadError::Invalid(_) => "mqtt_invalid_payload",
            PayloadError::BadTopic(_) => "mqtt_bad_topic",
        }
    }
}

/// `locker/{bank_id}/command`, QoS 1, from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandPayload {
    pub v: u8,
    pub command_id: Uuid,
    pub action: CommandAction,
    pub compartment: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

wire_enum! {
    /// What a command asks of the locker.
    pub enum CommandAction ("command action") {
        Open = "open",
    }
}

wire_enum! {
    /// A locker's answer to a command.
    pub enum CommandResult ("command result") {
        ActionCompleted = "action_completed",
        ActionFailed = "action_failed",
    }
}

/// `locker/{bank_id}/status`, from a locker: the result of a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPayload {
    pub v: u8,
    pub command_id: Uuid,
    pub result: CommandResult,
    pub error: Option<String>,
}

/// `locker/{bank_id}/ack`, QoS 1, from the server: the result of
/// `command_id` is recorded; the locker stops repeating it. A result the
/// server refuses (unknown command, another locker's command, malformed)
/// is never acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckPayload {
    pub v: u8,
    pub command_id: Uuid,
}

wire_enum! {
    /// A door sensor's reading.
    pub enum Door ("door state") {
        Open = "open",
        Closed = "closed",
    }
}

/// One compartment's sensors in a state report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompartmentState {
    pub number: i64,
    pub door: Option<Door>,
    pub occupied: Option<bool>,
}

/// `locker/{bank_id}/state`, from a locker: its heartbeat, with door and
/// occupancy of any compartments it reports on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePayload {
    pub v: u8,
    pub firmware: Option<String>,
    pub compartments: Option<Vec<CompartmentState>>,
}

/// One compartment in a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterCompartment {
    pub number: i64,
    pub size: String,
    pub label: Option<String>,
}

/// `provisioning/register`, from a locker on the provisioning listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterPayload {
    pub v: u8,
    /// The locker's MQTT client id on the provisioning listener; the reply
    /// goes to `provisioning/{client_id}/reply`, which only it may read.
    pub client_id: String,
    pub serial: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    #[serde(default)]
    pub compartments: Vec<RegisterCompartment>,
    pub provisioning_key: Option<String>,
}

/// Whether `id` can name a reply topic: 16 to 64 of `[A-Za-z0-9_-]`, so it
/// is unguessable enough and holds no topic wildcard or separator.
pub fn valid_client_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn parse_register(bytes: &[u8]) -> Result<RegisterPayload, PayloadError> {
    let value = check_envelope(bytes)?;
    let reg: RegisterPayload =
        serde_json::from_value(value).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    if !valid_client_id(&reg.client_id) {
        return Err(PayloadError::Invalid(
            "`client_id` must be 16 to 64 letters, digits, `-` or `_`".into(),
        ));
    }
    for (field, value, max) in [
        ("model", reg.model.as_deref(), 64),
        ("firmware", reg.firmware.as_deref(), 64),
        ("name", reg.name.as_deref(), 120),
        ("provisioning_key", reg.provisioning_key.as_deref(), 100),
    ] {
        if value.is_some_and(|v| v.chars().count() > max) {
            return Err(PayloadError::Invalid(format!(
                "`{field}` is over {max} characters"
            )));
        }
    }
    Ok(reg)
}

pub fn parse_state(bytes: &[u8]) -> Result<StatePayload, PayloadError> {
    let value = check_envelope(bytes)?;
    let state: StatePayload =
        serde_json::from_value(value).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    if state.compartments.as_ref().is_some_and(|c| c.len() > 500) {
        return Err(PayloadError::Invalid("more than 500 compartments".into()));
    }
    if state
        .firmware
        .as_ref()
        .is_some_and(|f| f.chars().count() > 64)
    {
        return Err(PayloadError::Invalid(
            "`firmware` is over 64 characters".into(),
        ));
    }
    Ok(state)
}

fn check_envelope(bytes: &[u8]) -> Result<serde_json::Value, PayloadError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(bytes.len()));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    match value.get("v").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => Ok(value),
        Some(v) => Err(PayloadError::UnknownVersion(v)),
        None => Err(PayloadError::Invalid("missing schema version `v`".into())),
    }
}

pub fn parse_status(bytes: &[u8]) -> Result<StatusPayload, PayloadError> {
    let value = check_envelope(bytes)?;
    let mut status: StatusPayload =
        serde_json::from_value(value).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    // A long error text is cut, never a reason to refuse the result: the
    // command must still end `failed`, not time out.
    // Control characters (a NUL, which PostgreSQL's TEXT cannot hold,
    // among them) become spaces.
    status.error = status.error.map(|e| {
        let plain: String = e
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        truncate_chars(plain, MAX_ERROR_CHARS)
    });
    Ok(status)
}

/// How much of a locker's `error` text is kept.
pub const MAX_ERROR_CHARS: usize = 500;

/// `text` cut to at most `max` characters (on a character boundary).
pub fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_string(),
        None => text,
    }
}

pub fn parse_command(bytes: &[u8]) -> Result<CommandPayload, PayloadError> {
    let value = check_envelope(bytes)?;
    serde_json::from_value(value).map_err(|e| PayloadError::Invalid(e.to_string()))
}

pub fn parse_ack(bytes: &[u8]) -> Result<AckPayload, PayloadError> {
    let value = check_envelope(bytes)?;
    serde_json::from_value(value).map_err(|e| PayloadError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_good_status_parses() {
        let id = Uuid::now_v7();
        let ok =
            format!(r#"{{"v":1,"command_id":"{id}","result":"action_failed","error":"jammed"}}"#);
        let s = parse_status(ok.as_bytes()).expect("valid");
        assert_eq!(
            (s.command_id, s.result, s.error.as_deref()),
            (id, CommandResult::ActionFailed, Some("jammed"))
        );
    }

    #[test]
    fn a_long_error_text_is_cut_never_a_reason_to_refuse_the_result() {
        let id = Uuid::now_v7();
        let long = "é".repeat(700);
        let doc =
            format!(r#"{{"v":1,"command_id":"{id}","result":"action_failed","error":"{long}"}}"#);
        let s = parse_status(doc.as_bytes()).expect("still a result");
        assert_eq!(s.result, CommandResult::ActionFailed);
        assert_eq!(s.error.map(|e| e.chars().count()), Some(MAX_ERROR_CHARS));
        assert_eq!(truncate_chars("abc".into(), 5), "abc");
        let doc = format!(
            r#"{{"v":1,"command_id":"{id}","result":"action_failed","error":"motor\u0000jam\nmed"}}"#
        );
        let s = parse_status(doc.as_bytes()).expect("a result");
        assert_eq!(s.error.as_deref(), Some("motor jam med"));
    }

    #[test]
    fn bad_statuses_get_typed_errors() {
        let id = Uuid::now_v7();
        assert!(matches!(
            parse_status(b"{nope"),
            Err(PayloadError::NotJson(_))
        ));
        assert_eq!(
            parse_status(
                format!(r#"{{"v":2,"command_id":"{id}","result":"action_completed"}}"#).as_bytes()
            ),
            Err(PayloadError::UnknownVersion(2))
        );
        assert!(matches!(
            parse_status(
                format!(r#"{{"command_id":"{id}","result":"action_completed"}}"#).as_bytes()
            ),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            parse_status(
                format!(r#"{{"v":1,"command_id":"{id}","result":"exploded"}}"#).as_bytes()
            ),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            parse_status(
                format!(r#"{{"v":1,"command_id":"{id}","result":"action_completed","x":1}}"#)
                    .as_bytes()
            ),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            parse_status(&vec![b' '; MAX_PAYLOAD + 1]),
            Err(PayloadError::TooLarge(_))
        ));
    }

    #[test]
    fn state_reports_carry_doors_and_occupancy() {
        let s = parse_state(
            br#"{"v":1,"firmware":"1.0","compartments":[{"number":2,"door":"open","occupied":false}]}"#,
        )
        .expect("valid");
        let c = &s.compartments.expect("compartments")[0];
        assert_eq!(
            (c.number, c.door, c.occupied),
            (2, Some(Door::Open), Some(false))
        );
        assert!(parse_state(br#"{"v":1}"#).is_ok());
        assert!(matches!(
            parse_state(br#"{"v":1,"compartments":[{"number":1,"door":"ajar"}]}"#),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn registrations_need_a_usable_client_id() {
        let ok = br#"{"v":1,"client_id":"prov-0123456789abcdef","serial":"SN-1","compartments":[{"number":1,"size":"small"}]}"#;
        let reg = parse_register(ok).expect("valid");
        assert_eq!((reg.serial.as_str(), reg.compartments.len()), ("SN-1", 1));
        for bad in ["short", "prov-0123456789abcdef/x", "prov-0123456789abc+#"] {
            let doc = format!(r#"{{"v":1,"client_id":"{bad}","serial":"SN-1"}}"#);
            assert!(
                matches!(
                    parse_register(doc.as_bytes()),
                    Err(PayloadError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let _ = parse_status(&bytes);
            let _ = parse_command(&bytes);
            let _ = parse_state(&bytes);
            let _ = parse_register(&bytes);
        }

        #[test]
        fn arbitrary_registrations_never_panic(client_id in ".{0,80}", serial in ".{0,80}", n in proptest::collection::vec(any::<i64>(), 0..5), key in proptest::option::of(".{0,120}")) {
            let doc = serde_json::json!({"v": 1, "client_id": client_id, "serial": serial,
                "compartments": n.iter().map(|n| serde_json::json!({"number": n, "size": "small"})).collect::<Vec<_>>(),
                "provisioning_key": key});
            if let Ok(reg) = parse_register(doc.to_string().as_bytes()) {
                prop_assert!(valid_client_id(&reg.client_id));
            }
        }

        #[test]
        fn arbitrary_json_objects_never_panic(v in 0u64..4, id in "[0-9a-f-]{0,40}", result in "[a-z_]{0,20}", err in proptest::option::of(".{0,600}")) {
            let doc = serde_json::json!({"v": v, "command_id": id, "result": result, "error": err});
            let _ = parse_status(doc.to_string().as_bytes());
        }
    }
}
