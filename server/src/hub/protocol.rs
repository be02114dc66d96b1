//! Pusher protocol 7 frames, as pusher-js and Laravel Echo read and write
//! them (docs/pusher-protocol.md): what a client sends, what the hub
//! sends, and the error and close codes.

use serde::Deserialize;
use serde_json::{json, Value};

/// Seconds of silence after which a client pings, by default (sent in
/// `connection_established`); the hub pings a client silent for longer,
/// and closes one that does not answer.
pub const ACTIVITY_TIMEOUT_SECS: u64 = 30;

/// Error and close codes pusher-js acts on: 4000-4099 it does not
/// reconnect, 4100-4199 it backs off, 4200-4299 it reconnects at once.
pub mod code {
    /// No app with this key.
    pub const APP_NOT_FOUND: u16 = 4001;
    /// Over the connection limit (back off).
    pub const OVER_CAPACITY: u16 = 4100;
    /// Bad signature or not allowed on a subscribe (a frame, the
    /// connection stays).
    pub const UNAUTHORIZED: u16 = 4009;
    /// Generic "reconnect now" (graceful shutdown, too far behind).
    pub const RECONNECT: u16 = 4200;
    /// No pong in time.
    pub const PONG_TIMEOUT: u16 = 4201;
    /// A client event or message refused (rate, size, channel type).
    pub const REJECTED: u16 = 4301;
}

/// One frame from a client.
#[derive(Debug, Deserialize)]
pub struct Inbound {
    pub event: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub channel: Option<String>,
}

impl Inbound {
    /// `data`, parsed when a client sent it as a JSON string.
    pub fn data(&self) -> Value {
        match &self.data {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| self.data.clone()),
            other => other.clone(),
        }
    }
}

/// What a `pusher:subscribe` asks for.
#[derive(Debug)]
pub struct Subscribe {
    pub channel: String,
    pub auth: Option<String>,
    pub channel_data: Option<String>,
    /// Lockstep's resume: send the log after this seq first.
    pub seq: Option<i64>,
}

impl Subscribe {
    pub fn parse(data: &Value) -> Option<Subscribe> {
        Some(Subscribe {
            channel: data.get("channel")?.as_str()?.to_string(),
            auth: data
                .get("auth")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                .map(str::to_string),
            channel_data: data
                .get("channel_data")
                .and_then(Value::as_str)
                .map(str::to_string),
            seq: data.get("seq").and_then(|s| {
                s.as_i64()
                    .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
            }),
        })
    }
}

/// `{"event": …, "data": "<JSON string>"[, "channel": …]}`: Pusher sends
/// `data` as a string.
pub fn frame(event: &str, channel: Option<&str>, data: &Value) -> String {
    let data = data.to_string();
    match channel {
        Some(channel) => json!({"event": event, "channel": channel, "data": data}),
        None => json!({"event": event, "data": data}),
    }
    .to_string()
}

pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    frame(
        "pusher:connection_established",
        None,
        &json!({"socket_id": socket_id, "activity_timeout": activity_timeout_secs}),
    )
}

/// `pusher:error` (data as an object, as Pusher and sockudo send it).
pub fn error(code: u16, message: &str) -> String {
    json!({"event": "pusher:error", "data": {"code": code, "message": message}}).to_string()
}

/// `pusher:subscription_error` for a channel, so Echo's `.error()` fires.
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> String {
    json!({
        "event": "pusher:subscription_error",
        "channel": channel,
        "data": {"type": kind, "error": message, "status": status}
    })
    .to_string()
}

pub fn subscription_succeeded(channel: &str, data: &Value) -> String {
    frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        data,
    )
}

pub fn pong() -> String {
    json!({"event": "pusher:pong", "data": "{}"}).to_string()
}

pub fn ping() -> String {
    json!({"event": "pusher:ping", "data": "{}"}).to_string()
}

/// A message on a channel whose `data` is already a JSON text (an
/// envelope, or what a publisher sent).
pub fn message(event: &str, channel: &str, data: &str) -> String {
    json!({"event": event, "channel": channel, "data": data}).to_string()
}

/// A client event as the other subscribers get it: `data` passed on as
/// the sender wrote it, with the sender's `user_id` on a presence channel.
pub fn client_event(event: &str, channel: &str, data: &Value, user_id: Option<&str>) -> String {
    match user_id {
        Some(user_id) => {
            json!({"event": event, "channel": channel, "data": data, "user_id": user_id})
        }
        None => json!({"event": event, "channel": channel, "data": data}),
    }
    .to_string()
}

/// A socket id as every Pusher library checks it: `\d+\.\d+`.
pub fn new_socket_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    format!(
        "{}.{}",
        rng.gen_range(1..10_000_000_000u64),
        rng.gen_range(1..10_000_000_000u64)
    )
}

pub use lockstep_wire::channel::valid_socket_id;

/// Pusher's channel-name rule: `[-a-zA-Z0-9_=@,.;]`, at most `max` long.
pub fn valid_channel(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_=@,.;".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_data_as_a_json_string() {
        let f: Value = serde_json::from_str(&connection_established("1.2", ACTIVITY_TIMEOUT_SECS))
            .expect("json");
        assert_eq!(f["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(f["data"].as_str().expect("string")).expect("json");
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], ACTIVITY_TIMEOUT_SECS);
    }

    #[test]
    fn socket_ids_and_channels_follow_pushers_rules() {
        for _ in 0..100 {
            assert!(valid_socket_id(&new_socket_id()));
        }
        assert!(!valid_socket_id("1."));
        assert!(!valid_socket_id("a.1"));
        assert!(!valid_socket_id("12"));
        assert!(valid_channel("private-user.0190-ab", 164));
        assert!(valid_channel("presence-App.Models.User.1", 164));
        assert!(!valid_channel("a b", 164));
        assert!(!valid_channel("#server-to-user-1", 164));
        assert!(!valid_channel(&"a".repeat(165), 164));
    }

    #[test]
    fn subscribe_reads_auth_channel_data_and_seq() {
        let s = Subscribe::parse(&json!({"channel": "private-x", "auth": "k:abc", "seq": 7}))
            .expect("parsed");
        assert_eq!((s.auth.as_deref(), s.seq), (Some("k:abc"), Some(7)));
        let public = Subscribe::parse(&json!({"channel": "x", "auth": ""})).expect("parsed");
        assert_eq!(public.auth, None);
        assert!(Subscribe::parse(&json!({"auth": "x"})).is_none());
    }
}
