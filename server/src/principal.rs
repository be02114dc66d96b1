//! Who is calling the API: a bearer token (scripts, devices) or the session
//! cookie (the browser). A request may do what the caller's role allows
//! and, with a token, what the token's abilities allow too.

use axum::{extract::FromRequestParts, http::request::Parts};
use lockstep_core::{
    accounts::User,
    caller::Caller,
    events::Actor,
    session_auth,
    tokens::{authenticate_token, Abilities, Ability},
};
use tower_sessions::Session;

use crate::{api_error::ApiError, application::AppState};

#[derive(Clone, Debug)]
pub enum Principal {
    Session(User),
    Token {
        token_id: uuid::Uuid,
        user: User,
        abilities: Abilities,
    },
}

impl Principal {
    pub fn user(&self) -> &User {
        match self {
            Principal::Session(user) | Principal::Token { user, .. } => user,
        }
    }

    /// The caller of a domain command, with a fresh correlation id.
    pub fn caller(&self) -> Caller {
        let actor = match self {
            Principal::Session(user) => Actor::User { id: user.id },
            Principal::Token { token_id, user, .. } => Actor::Token {
                id: *token_id,
                user_id: user.id,
            },
        };
        Caller::new(self.user().clone(), actor)
    }

    /// Ok when both the role and (for tokens) the token allow `ability`.
    pub fn require(&self, ability: Ability) -> Result<&User, ApiError> {
        let user = self.user();
        let by_token = match self {
            Principal::Session(_) => true,
            Principal::Token { abilities, .. } => abilities.contains(ability),
        };
        if by_token && ability.allowed_for(user.role) {
            Ok(user)
        } else {
            tracing::info!(user_id = %user.id, ability = %ability, "ability refused");
            Err(ApiError::MissingAbility(ability.as_str()))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let db = &state.services.db;
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
                Some(grant) => Ok(Principal::Token {
                    token_id: grant.token_id,
                    user: grant.user,
                    abilities: grant.abilities,
                }),
                None => Err(ApiError::InvalidToken("unknown or revoked token")),
            };
        }
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)?;
        match session_auth::session_user(db, &session).await? {
            Some(user) => Ok(Principal::Session(user)),
            None => Err(ApiError::Unauthenticated),
        }
    }
}
