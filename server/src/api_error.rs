//! The API's one error shape, `{"error": {"code", "message"}}` (plus
//! `conflict` for a stale edit), with the matching status. Every refusal is logged with its reason and counted;
//! internal causes are logged in full and never sent to the client.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use lockstep_core::{records::StaleEdit, CoreError};
use serde::Serialize;

use crate::metrics::count_rejection;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in or send an API token")]
    Unauthenticated,
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("this action needs the ability {0}")]
    MissingAbility(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error("state-changing requests must come from this site's own pages")]
    CrossOrigin,
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this Idempotency-Key was used for a different request; send a new key")]
    IdempotencyKeyReused,
    /// An edit made on an old version (409, with the verdict).
    #[error("{}", CoreError::Stale(.0.clone()))]
    Stale(Box<StaleEdit>),
    /// An edit without `If-Match` (428).
    #[error("send the version you edited as If-Match: \"<version>\" (from the record's ETag)")]
    VersionRequired,
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every API error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    /// With `stale_version` (409): who changed the record since the
    /// version the edit was made on, when, and which fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<StaleEdit>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthenticated`, `invalid_token`,
    /// `missing_ability`, `forbidden`, `not_found`, `bad_request`,
    /// `unprocessable`, `conflict`, `stale_version`, `version_required`,
    /// `cross_origin`, `internal`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::MissingAbility(_)
            | ApiError::Forbidden(_)
            | ApiError::Refused(_)
            | ApiError::CrossOrigin => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Conflict(_) | ApiError::Stale(_) => StatusCode::CONFLICT,
            ApiError::VersionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::MissingAbility(_) => "missing_ability",
            ApiError::Forbidden(_) | ApiError::Refused(_) => "forbidden",
            ApiError::CrossOrigin => "cross_origin",
            ApiError::NotFound => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::Conflict(_) => "conflict",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Stale(_) => "stale_version",
            ApiError::VersionRequired => "version_required",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, source = ?cause.source(), "internal error");
            }
            other => {
                tracing::info!(code, reason = %other, "request refused");
                count_rejection(code);
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
            conflict: match self {
                ApiError::Stale(stale) => Some(*stale),
                _ => None,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<CoreError> for ApiError {
    fn from(err: CoreError) -> Self {
        match err {
            CoreError::NotFound => ApiError::NotFound,
            CoreError::Invalid(msg) => ApiError::Unprocessable(msg),
            CoreError::Conflict(msg) => ApiError::Conflict(msg),
            CoreError::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            CoreError::Forbidden(msg) => ApiError::Refused(msg),
            e @ CoreError::VersionConflict { .. } => ApiError::Conflict(e.to_string()),
            CoreError::Stale(stale) => ApiError::Stale(stale),
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

/// `Json<T>` whose rejections use the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Unprocessable(e.body_text())),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// `Query<T>` whose rejections use the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// `Path<T>` whose rejections use the API's error shape (a malformed id
/// is a 404: no such resource).
pub struct ApiPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| ApiError::NotFound)
    }
}

pub async fn api_not_found() -> ApiError {
    ApiError::NotFound
}
