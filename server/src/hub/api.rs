//! The Pusher HTTP API, so a Laravel app with the `pusher` broadcaster (or
//! any Pusher server library) publishes through Lockstep: `POST
//! /apps/{app_id}/events` and `/batch_events`, `GET /apps/{app_id}/channels`,
//! `/channels/{name}` and `/channels/{name}/users`, signed as Pusher signs (docs/pusher-protocol.md
//! §6). Publishes are ephemeral, as on Pusher: nothing is written to the
//! database; Lockstep's own channels are written only by the core (403).

use axum::{
    body::Bytes,
    extract::{OriginalUri, Path, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::eventstore::channels::{Channel, PresenceChannel};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{keys::constant_time_eq, protocol, Hub};

/// How far `auth_timestamp` may be from now, seconds (as sockudo).
const MAX_SKEW_SECS: i64 = 600;
const MAX_CHANNELS: usize = 100;
const MAX_BATCH: usize = 10;
const MAX_EVENT_NAME: usize = 200;

/// An error in the shape soketi answers (`{"error", "code"}`).
pub struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        crate::metrics::count_rejection(match self.0 {
            StatusCode::UNAUTHORIZED => "hub_api_bad_signature",
            StatusCode::PAYLOAD_TOO_LARGE => "hub_api_oversize",
            StatusCode::FORBIDDEN => "hub_api_forbidden",
            StatusCode::NOT_FOUND => "hub_api_unknown_app",
            _ => "hub_api_bad_request",
        });
        tracing::info!(status = self.0.as_u16(), error = %self.1, "Pusher HTTP API request refused");
        (
            self.0,
            Json(json!({"error": self.1, "code": self.0.as_u16()})),
        )
            .into_response()
    }
}

fn fail(status: StatusCode, message: impl Into<String>) -> Fail {
    Fail(status, message.into())
}

/// Checks the request's Pusher signature: `auth_key`, `auth_timestamp`
/// within 600 s, `body_md5` of a non-empty body, and `auth_signature` =
/// hex(HMAC-SHA256(secret, "METHOD\nPATH\nsorted query without it"))`.
fn verify(
    hub: &Hub,
    app_id: &str,
    method: &Method,
    uri: &axum::http::Uri,
    body: &[u8],
) -> Result<(), Fail> {
    if app_id != hub.keys.app_id {
        return Err(fail(StatusCode::NOT_FOUND, format!("no app {app_id}")));
    }
    let query = uri.query().unwrap_or("");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "the query string cannot be read"))?;
    let mut signature = None;
    let mut params: Vec<(String, String)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        let k = k.to_lowercase();
        if k == "auth_signature" {
            signature = Some(v);
        } else {
            params.push((k, v));
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let unauthorized = |m: &str| fail(StatusCode::UNAUTHORIZED, m);
    let key = param("auth_key").ok_or_else(|| unauthorized("auth_key is missing"))?;
    if !constant_time_eq(key.as_bytes(), hub.keys.key.as_bytes()) {
        return Err(unauthorized("unknown auth_key"));
    }
    let timestamp: i64 = param("auth_timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| unauthorized("auth_timestamp is missing"))?;
    let now = lockstep_core::now_ms() / 1000;
    if (now - timestamp).abs() > MAX_SKEW_SECS {
        return Err(unauthorized(
            "auth_timestamp is more than 600 s from the server's clock",
        ));
    }
    if !body.is_empty() {
        let md5 = hex::encode(Md5::digest(body));
        if param("body_md5").is_none_or(|given| !constant_time_eq(given.as_bytes(), md5.as_bytes()))
        {
            return Err(unauthorized("body_md5 does not match the body"));
        }
    }
    params.sort();
    let qs = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let expected = hub
        .keys
        .sign(&format!("{}\n{}\n{qs}", method.as_str(), uri.path()));
    match signature {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(unauthorized("invalid signature")),
    }
}

#[derive(Debug, Deserialize)]
struct Event {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
}

/// One event, checked: (name, data, channels, socket to exclude).
struct Checked {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Option<String>,
}

fn check(hub: &Hub, event: Event) -> Result<Checked, Fail> {
    let bad = |m: &str| fail(StatusCode::BAD_REQUEST, m);
    if event.name.is_empty() || event.name.len() > MAX_EVENT_NAME {
        return Err(bad("name must be 1 to 200 characters"));
    }
    // Pusher's `data` is a string, passed on unchanged.
    let data = match event.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if data.len() > hub.limits.max_payload {
        return Err(fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("data is over {} bytes", hub.limits.max_payload),
        ));
    }
    let channels = match (event.channels, event.channel) {
        (Some(list), _) => list,
        (None, Some(one)) => vec![one],
        (None, None) => return Err(bad("channels (or channel) is required")),
    };
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return Err(bad("1 to 100 channels per event"));
    }
    for c in &channels {
        if !protocol::valid_channel(c, hub.limits.max_channel_name) {
            return Err(bad("invalid channel name"));
        }
        if c.parse::<Channel>().is_ok() || c.parse::<PresenceChannel>().is_ok() {
            return Err(fail(
                StatusCode::FORBIDDEN,
                format!("{c} is written only by Lockstep"),
            ));
        }
    }
    if let Some(id) = &event.socket_id {
        if !protocol::valid_socket_id(id) {
            return Err(bad("socket_id must look like 123.456"));
        }
    }
    Ok(Checked {
        name: event.name,
        data,
        channels,
        except: event.socket_id,
    })
}

fn publish(hub: &Hub, event: Checked) {
    for channel in event.channels {
        let frame = protocol::message(&event.name, &channel, &event.data);
        hub.registry
            .publish(channel, frame.into(), event.except.clone());
    }
    metrics::counter!("lockstep_hub_api_events_total").increment(1);
}

/// `POST /apps/{app_id}/events`
pub async fn events(
    State(hub): State<Hub>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Json<Value>, Fail> {
    verify(&hub, &app_id, &Method::POST, &uri, &body)?;
    let event: Event = serde_json::from_slice(&body).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("the body is not an event: {e}"),
        )
    })?;
    let checked = check(&hub, event)?;
    publish(&hub, checked);
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
struct Batch {
    batch: Vec<Event>,
}

/// `POST /apps/{app_id}/batch_events`: all checked before any is sent.
pub async fn batch_events(
    State(hub): State<Hub>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Result<Json<Value>, Fail> {
    verify(&hub, &app_id, &Method::POST, &uri, &body)?;
    let batch: Batch = serde_json::from_slice(&body).map_err(|e| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("the body is not a batch: {e}"),
        )
    })?;
    if batch.batch.is_empty() || batch.batch.len() > MAX_BATCH {
        return Err(fail(StatusCode::BAD_REQUEST, "1 to 10 events per batch"));
    }
    let checked = batch
        .batch
        .into_iter()
        .map(|e| check(&hub, e))
        .collect::<Result<Vec<_>, _>>()?;
    for c in checked {
        publish(&hub, c);
    }
    Ok(Json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
struct ChannelsQuery {
    filter_by_prefix: Option<String>,
    info: Option<String>,
}

fn query_of(uri: &axum::http::Uri) -> ChannelsQuery {
    serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
}

fn wants(info: &Option<String>, what: &str) -> bool {
    info.as_deref()
        .is_some_and(|i| i.split(',').any(|x| x.trim() == what))
}

/// `GET /apps/{app_id}/channels`: the occupied channels.
pub async fn channels(
    State(hub): State<Hub>,
    Path(app_id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, Fail> {
    verify(&hub, &app_id, &Method::GET, &uri, &[])?;
    let q = query_of(&uri);
    let user_count = wants(&q.info, "user_count");
    // As Pusher: user counts only when the listing is of presence channels.
    if user_count
        && !q
            .filter_by_prefix
            .as_deref()
            .is_some_and(|p| p.starts_with("presence-"))
    {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let mut out = Map::new();
    for c in hub.registry.occupancy(q.filter_by_prefix).await {
        let mut info = Map::new();
        if wants(&q.info, "subscription_count") {
            info.insert("subscription_count".into(), json!(c.subscriptions));
        }
        if let (true, Some(users)) = (user_count, c.users) {
            info.insert("user_count".into(), json!(users));
        }
        out.insert(c.name, Value::Object(info));
    }
    Ok(Json(json!({"channels": out})))
}

/// `GET /apps/{app_id}/channels/{name}`
pub async fn channel(
    State(hub): State<Hub>,
    Path((app_id, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, Fail> {
    verify(&hub, &app_id, &Method::GET, &uri, &[])?;
    let q = query_of(&uri);
    if wants(&q.info, "user_count") && !name.starts_with("presence-") {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "user_count is only for presence channels",
        ));
    }
    let found = hub
        .registry
        .occupancy(Some(name.clone()))
        .await
        .into_iter()
        .find(|c| c.name == name);
    let count = found.as_ref().map_or(0, |c| c.subscriptions);
    let mut out = json!({"occupied": count > 0});
    if wants(&q.info, "subscription_count") {
        out["subscription_count"] = json!(count);
    }
    if wants(&q.info, "user_count") {
        out["user_count"] = json!(found.and_then(|c| c.users).unwrap_or(0));
    }
    Ok(Json(out))
}

/// `GET /apps/{app_id}/channels/{name}/users`: a presence channel's
/// members (each user once).
pub async fn users(
    State(hub): State<Hub>,
    Path((app_id, name)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, Fail> {
    verify(&hub, &app_id, &Method::GET, &uri, &[])?;
    if !name.starts_with("presence-") {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "users are listed only for presence channels",
        ));
    }
    let users: Vec<Value> = hub
        .registry
        .users(name)
        .await
        .into_iter()
        .map(|id| json!({"id": id}))
        .collect();
    Ok(Json(json!({"users": users})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_pushers_worked_example() {
        let keys = super::super::AppKeys::new(
            "3".into(),
            "278d425bdf160c739803".into(),
            "7ad3773142a6692b25b8".into(),
        );
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            hex::encode(Md5::digest(body)),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            keys.sign("POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }
}
