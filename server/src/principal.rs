//! The API's extractor for who is calling: a bearer token (scripts,
//! devices) or the session cookie (the browser), turned into the core's
//! `Principal`, whose ability check the server functions use as well.

use std::ops::Deref;

use axum::{
    extract::FromRequestParts,
    http::{request::Parts, Method},
};
use lockstep_core::{
    identity::accounts::User,
    identity::caller::Caller,
    identity::principal,
    identity::session_auth,
    identity::tokens::{authenticate_token, Ability},
};
use tower_sessions::Session;

use crate::{api_error::ApiError, state::AppState};

/// The caller of an API request, the WebSocket connection it names in
/// `X-Socket-ID` (spared the broadcasts it causes, as Laravel's
/// `toOthers()`), and the browser tab it names in `X-Tab-ID` (spared them
/// when it polls).
#[derive(Clone, Debug)]
pub struct Principal(
    pub principal::Principal,
    pub Option<String>,
    pub Option<String>,
);

impl Deref for Principal {
    type Target = principal::Principal;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Principal {
    /// The user, when the core's ability check passes; the API's
    /// `missing_ability` error otherwise.
    pub fn require(&self, ability: Ability) -> Result<&User, ApiError> {
        self.0
            .require(ability)
            .map_err(|_| ApiError::MissingAbility(ability.as_str()))
    }

    /// The core's caller, carrying the request's `X-Socket-ID`.
    pub fn caller(&self) -> Caller {
        self.0
            .caller()
            .with_socket_id(self.1.clone())
            .with_tab_id(self.2.clone())
    }

    /// The tab named in `X-Tab-ID`.
    pub fn tab_id(&self) -> Option<&str> {
        self.2.as_deref()
    }
}

/// The request's `X-Tab-ID`, when it names a tab; a malformed one is
/// refused.
fn tab_id(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(lockstep_wire::channel::TAB_ID_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(id) if lockstep_wire::channel::valid_tab_id(id) => Ok(Some(id.to_string())),
        _ => {
            crate::metrics::count_rejection("bad_tab_id");
            Err(ApiError::BadRequest(
                "X-Tab-ID must be 8 to 64 letters, digits, - or _".into(),
            ))
        }
    }
}

/// The request's `X-Socket-ID`, when it names a socket (`123.456`); a
/// malformed one is refused rather than silently ignored.
fn socket_id(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get("x-socket-id") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(id) if crate::hub::protocol::valid_socket_id(id) => Ok(Some(id.to_string())),
        _ => {
            crate::metrics::count_rejection("bad_socket_id");
            Err(ApiError::BadRequest(
                "X-Socket-ID must be a socket id like 123.456".into(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let db = &state.services.db;
        let socket_id = socket_id(parts)?;
        let tab_id = tab_id(parts)?;
        if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            let secret = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or(ApiError::InvalidToken(
                    "the Authorization header must be `Bearer <token>`",
                ))?;
            return match authenticate_token(db, secret).await? {
                Some(grant) => Ok(Principal(
                    principal::Principal::Token {
                        token_id: grant.token_id,
                        user: grant.user,
                        abilities: grant.abilities,
                    },
                    socket_id,
                    tab_id,
                )),
                None => Err(ApiError::InvalidToken("unknown or revoked token")),
            };
        }
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        match session_auth::session_user_renewing(db, &session, safe).await? {
            Some(user) => Ok(Principal(
                principal::Principal::Session(user),
                socket_id,
                tab_id,
            )),
            None => Err(ApiError::Unauthenticated),
        }
    }
}
