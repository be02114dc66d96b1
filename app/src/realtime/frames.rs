//! Pusher protocol 7 as the browser client speaks it: the frames it reads
//! (parsed into [`Inbound`]) and the ones it writes. Pure, so it is tested
//! natively.

use serde::Deserialize;
use serde_json::{json, Value};

/// A frame from the hub, as the client acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// `pusher:connection_established`.
    Established {
        socket_id: String,
        activity_timeout_secs: u64,
    },
    Ping,
    Pong,
    /// `pusher_internal:subscription_succeeded`.
    Subscribed {
        channel: String,
    },
    /// `pusher:subscription_error` (status: 401/403 refused, 4xxx limits).
    SubscriptionError {
        channel: String,
        status: u16,
    },
    /// `pusher:error`, connection-level.
    Error {
        code: Option<u16>,
        message: String,
    },
    /// `lockstep:reset`: the log no longer reaches back to the seq the
    /// client asked for; refetch, then follow from `seq`.
    Reset {
        channel: String,
        seq: i64,
    },
    /// `pusher_internal:subscription_succeeded` on a presence channel: who
    /// is there (user id, name), this connection included.
    Members {
        channel: String,
        members: Vec<(String, String)>,
    },
    /// `pusher_internal:member_added`.
    MemberAdded {
        channel: String,
        user_id: String,
        name: String,
    },
    /// `pusher_internal:member_removed`.
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    /// A `client-…` event another member sent on a presence channel.
    Whisper {
        channel: String,
        user_id: String,
        event: String,
        data: Value,
    },
    /// Any other event on a channel (an envelope on a Lockstep channel);
    /// `data` is the raw data string.
    Message {
        channel: String,
        event: String,
        data: String,
    },
    /// A frame this client has no use for.
    Other,
}

#[derive(Deserialize)]
struct Raw {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    user_id: Option<String>,
}

/// A member's id and name from Pusher's `{user_id, user_info: {name}}`
/// (the id a string or a number).
fn member(d: &Value) -> Option<(String, String)> {
    let id = match d.get("user_id")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((id, name_of(d.get("user_info"))))
}

fn name_of(info: Option<&Value>) -> String {
    info.and_then(|i| i.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("Someone")
        .to_string()
}

/// `data` is a JSON string in Pusher's frames, sometimes an object.
fn data_object(data: &Value) -> Value {
    match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Parses one text frame; `None` for text that is not a Pusher frame.
pub fn parse(text: &str) -> Option<Inbound> {
    let raw: Raw = serde_json::from_str(text).ok()?;
    let channel = raw.channel.unwrap_or_default();
    Some(match raw.event.as_str() {
        "pusher:connection_established" => {
            let d = data_object(&raw.data);
            Inbound::Established {
                socket_id: d.get("socket_id")?.as_str()?.to_string(),
                activity_timeout_secs: d
                    .get("activity_timeout")
                    .and_then(Value::as_u64)
                    .unwrap_or(120),
            }
        }
        "pusher:ping" => Inbound::Ping,
        "pusher:pong" => Inbound::Pong,
        "pusher_internal:subscription_succeeded" => {
            let d = data_object(&raw.data);
            match d
                .get("presence")
                .and_then(|p| p.get("hash"))
                .and_then(Value::as_object)
            {
                Some(hash) => Inbound::Members {
                    channel,
                    members: hash
                        .iter()
                        .map(|(id, info)| (id.clone(), name_of(Some(info))))
                        .collect(),
                },
                None => Inbound::Subscribed { channel },
            }
        }
        "pusher_internal:member_added" => {
            let (user_id, name) = member(&data_object(&raw.data))?;
            Inbound::MemberAdded {
                channel,
                user_id,
                name,
            }
        }
        "pusher_internal:member_removed" => Inbound::MemberRemoved {
            channel,
            user_id: member(&data_object(&raw.data))?.0,
        },
        event if event.starts_with("client-") && raw.user_id.is_some() => Inbound::Whisper {
            channel,
            user_id: raw.user_id.unwrap_or_default(),
            event: event.to_string(),
            data: data_object(&raw.data),
        },
        "pusher:subscription_error" => {
            let d = data_object(&raw.data);
            Inbound::SubscriptionError {
                channel,
                status: d
                    .get("status")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0),
            }
        }
        "pusher:error" => {
            let d = data_object(&raw.data);
            Inbound::Error {
                code: d
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok()),
                message: d
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }
        }
        "lockstep:reset" => {
            let d = data_object(&raw.data);
            Inbound::Reset {
                channel,
                seq: d.get("seq").and_then(Value::as_i64).unwrap_or(0),
            }
        }
        event if !channel.is_empty() && !event.starts_with("pusher") => Inbound::Message {
            channel,
            event: event.to_string(),
            data: match raw.data {
                Value::String(s) => s,
                other => other.to_string(),
            },
        },
        _ => Inbound::Other,
    })
}

/// `/broadcasting/auth`'s answer: the signature, and for a presence
/// channel the member it signed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Signed {
    pub auth: String,
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:subscribe`, with the signature for a private or presence
/// channel and the seq to resume after (Lockstep's extension: the hub
/// replays the log after it, then goes live, with no gap and no
/// duplicate).
pub fn subscribe(channel: &str, auth: Option<&Signed>, seq: Option<i64>) -> String {
    let mut data = json!({ "channel": channel });
    if let Some(signed) = auth {
        data["auth"] = json!(signed.auth);
        if let Some(member) = &signed.channel_data {
            data["channel_data"] = json!(member);
        }
    }
    if let Some(seq) = seq {
        data["seq"] = json!(seq);
    }
    json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

pub fn unsubscribe(channel: &str) -> String {
    json!({ "event": "pusher:unsubscribe", "data": { "channel": channel } }).to_string()
}

/// A client event (`client-…`) to the other members of a presence channel.
pub fn whisper(channel: &str, event: &str, data: &Value) -> String {
    json!({ "event": event, "channel": channel, "data": data }).to_string()
}

pub fn ping() -> String {
    json!({ "event": "pusher:ping", "data": {} }).to_string()
}

pub fn pong() -> String {
    json!({ "event": "pusher:pong", "data": {} }).to_string()
}

/// What to do after the hub closed the socket with `code` (Pusher's
/// ranges, as pusher-js reads them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterClose {
    /// 4000-4099: the hub will refuse again (bad key, over quota): poll.
    GiveUp,
    /// 4200-4299: the hub asks for an immediate reconnect (a restart).
    Now,
    /// 4100-4199 and anything else (network loss, 1006): back off.
    BackOff,
}

pub fn after_close(code: u16) -> AfterClose {
    match code {
        4000..=4099 => AfterClose::GiveUp,
        4200..=4299 => AfterClose::Now,
        _ => AfterClose::BackOff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_frames_the_hub_sends() {
        assert_eq!(
            parse(
                r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}"#
            ),
            Some(Inbound::Established {
                socket_id: "1.2".into(),
                activity_timeout_secs: 30
            })
        );
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Some(Inbound::Ping)
        );
        assert_eq!(
            parse(
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-user.x","data":"{}"}"#
            ),
            Some(Inbound::Subscribed {
                channel: "private-user.x".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"pusher:subscription_error","channel":"c","data":{"type":"AuthError","error":"no","status":403}}"#
            ),
            Some(Inbound::SubscriptionError {
                channel: "c".into(),
                status: 403
            })
        );
        assert_eq!(
            parse(r#"{"event":"pusher:error","data":{"code":4009,"message":"Invalid signature"}}"#),
            Some(Inbound::Error {
                code: Some(4009),
                message: "Invalid signature".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"lockstep:reset","channel":"c","data":"{\"channel\":\"c\",\"seq\":42}"}"#
            ),
            Some(Inbound::Reset {
                channel: "c".into(),
                seq: 42
            })
        );
        assert_eq!(
            parse(r#"{"event":"CompartmentOpenStatusUpdated","channel":"c","data":"{\"seq\":1}"}"#),
            Some(Inbound::Message {
                channel: "c".into(),
                event: "CompartmentOpenStatusUpdated".into(),
                data: r#"{"seq":1}"#.into()
            })
        );
        assert_eq!(parse("not json"), None);
        assert_eq!(
            parse(r#"{"event":"pusher:connection_established","data":"{}"}"#),
            None
        );
    }

    #[test]
    fn reads_presence_frames() {
        let subscribed = r#"{"event":"pusher_internal:subscription_succeeded","channel":"presence-record.user.1","data":"{\"presence\":{\"ids\":[\"a\"],\"hash\":{\"a\":{\"name\":\"Ann\"}},\"count\":1}}"}"#;
        assert_eq!(
            parse(subscribed),
            Some(Inbound::Members {
                channel: "presence-record.user.1".into(),
                members: vec![("a".into(), "Ann".into())]
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"pusher_internal:member_added","channel":"p","data":"{\"user_id\":7,\"user_info\":{\"name\":\"Bo\"}}"}"#
            ),
            Some(Inbound::MemberAdded {
                channel: "p".into(),
                user_id: "7".into(),
                name: "Bo".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"pusher_internal:member_removed","channel":"p","data":"{\"user_id\":\"7\"}"}"#
            ),
            Some(Inbound::MemberRemoved {
                channel: "p".into(),
                user_id: "7".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"event":"client-editing","channel":"p","user_id":"7","data":{"editing":true}}"#
            ),
            Some(Inbound::Whisper {
                channel: "p".into(),
                user_id: "7".into(),
                event: "client-editing".into(),
                data: json!({"editing": true})
            })
        );
        let w: Value =
            serde_json::from_str(&whisper("p", "client-editing", &json!({"editing": false})))
                .unwrap();
        assert_eq!(
            w,
            json!({"event":"client-editing","channel":"p","data":{"editing":false}})
        );
    }

    #[test]
    fn writes_a_resuming_subscribe() {
        let signed = Signed {
            auth: "k:s".into(),
            channel_data: None,
        };
        let f: Value =
            serde_json::from_str(&subscribe("private-user.x", Some(&signed), Some(7))).unwrap();
        assert_eq!(
            f,
            json!({"event":"pusher:subscribe","data":{"channel":"private-user.x","auth":"k:s","seq":7}})
        );
        let f: Value = serde_json::from_str(&subscribe("public", None, None)).unwrap();
        assert_eq!(
            f,
            json!({"event":"pusher:subscribe","data":{"channel":"public"}})
        );
    }

    #[test]
    fn close_codes_follow_pushers_ranges() {
        assert_eq!(after_close(4001), AfterClose::GiveUp);
        assert_eq!(after_close(4200), AfterClose::Now);
        assert_eq!(after_close(4100), AfterClose::BackOff);
        assert_eq!(after_close(4201), AfterClose::Now);
        assert_eq!(after_close(1006), AfterClose::BackOff);
    }
}
