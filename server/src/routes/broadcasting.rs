//! `POST /broadcasting/auth`, as Laravel answers it: the session cookie or
//! a bearer token names the caller, `channels::authorize` decides, and the
//! answer is the channel's signature, `{"auth": "key:hex(HMAC-SHA256(
//! secret, socket_id:channel))"}`; for a presence channel, also the member
//! (`channel_data`: `user_id`, `user_info.name`), signed with it.

use axum::{
    body::Bytes,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{
    eventstore::channels::{self, Channel, PresenceChannel, RecordType},
    identity::tokens::Ability,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api_error::ApiError, hub::protocol::valid_socket_id, principal::Principal, state::AppState,
};

#[derive(Debug, Deserialize)]
struct AuthRequest {
    socket_id: String,
    channel_name: String,
}

/// Signs a subscription the caller may make.
pub async fn broadcasting_auth(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = principal.require(Ability::EventsRead)?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let request: Result<AuthRequest, String> = if json_body {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            crate::metrics::count_rejection("hub_auth_bad_request");
            return Ok(error(
                StatusCode::BAD_REQUEST,
                &format!("socket_id and channel_name are required: {e}"),
            ));
        }
    };
    if !valid_socket_id(&request.socket_id) {
        crate::metrics::count_rejection("hub_auth_bad_request");
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "socket_id must look like 123.456",
        ));
    }
    let name = request.channel_name.as_str();
    // Only the canonical spelling (the one its envelopes carry).
    let log = name
        .parse::<Channel>()
        .ok()
        .filter(|c| c.to_string() == name);
    let presence = name
        .parse::<PresenceChannel>()
        .ok()
        .filter(|c| c.to_string() == name);
    let db = &state.services.db;
    let allowed = match (&log, &presence) {
        (Some(channel), _) => channels::authorize(db, user, channel).await?,
        (None, Some(channel)) => {
            // A record's presence also needs the right to read that kind
            // of record (a token's abilities).
            let reads = match channel {
                PresenceChannel::Record(RecordType::User, _) => Ability::UserRead,
                _ => Ability::LockerRead,
            };
            principal.require(reads).is_ok()
                && channels::authorize_presence(db, user, channel).await?
        }
        (None, None) => false,
    };
    if !allowed {
        crate::metrics::count_rejection("hub_auth_refused");
        tracing::info!(user_id = %user.id, channel = %name.chars().take(200).collect::<String>(), "channel auth refused");
        return Ok(error(StatusCode::FORBIDDEN, "not allowed on this channel"));
    }
    if presence.is_some() {
        // The member, as Laravel's presence channels describe one.
        let channel_data =
            json!({"user_id": user.id.to_string(), "user_info": {"name": user.name}}).to_string();
        let auth =
            state
                .pusher
                .lockstep_channel_auth(&request.socket_id, name, Some(&channel_data));
        return Ok(Json(json!({ "auth": auth, "channel_data": channel_data })).into_response());
    }
    let auth = state.pusher.log_channel_auth(&request.socket_id, name);
    Ok(Json(json!({ "auth": auth })).into_response())
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}
