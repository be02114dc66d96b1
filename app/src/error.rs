//! `AppError`: what a server function can fail with, worded for the person
//! reading it. Internal causes are logged on the server and never shown.

use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppError {
    #[error("Please sign in.")]
    Unauthenticated,
    #[error("This page is for administrators only.")]
    Forbidden,
    #[error("Wrong email or password.")]
    BadCredentials,
    #[error("Too many sign-in attempts. Try again in {0} seconds.")]
    Throttled(u64),
    #[error("{0}")]
    Invalid(String),
    /// The call itself is malformed (a missing or undecodable argument).
    #[error("{0}")]
    BadRequest(String),
    #[error("The request is too large.")]
    TooLarge,
    #[error("Not found.")]
    NotFound,
    /// The caller may not do this (a reason from the core).
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The record moved on since the version the edit was made on; nothing
    /// was written.
    #[error("{}", .0.message())]
    Stale(Box<StaleRecord>),
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
    #[error("Could not reach the server ({0}).")]
    Transport(String),
}

/// A refused stale edit: the record's current version, its last edit
/// (who, when, which fields since the editor's version), and, where the
/// caller fills them in, its stored values (the conflict dialog's
/// "theirs").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleRecord {
    pub version: i64,
    pub updated_by: Option<String>,
    pub updated_at: Option<i64>,
    pub fields: Vec<String>,
    pub values: Vec<(String, String)>,
}

impl StaleRecord {
    fn message(&self) -> String {
        let who = self.updated_by.as_deref().unwrap_or("Someone else");
        format!("{who} changed this meanwhile; nothing was saved.")
    }
}

impl FromServerFnError for AppError {
    type Encoder = crate::codec::TextJson;

    /// On the server: the call could not be decoded (a client error, 4xx).
    /// In the browser: the server could not be reached or understood.
    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // On the server, reading the request body fails this way.
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::Deserialization(m)
                if cfg!(feature = "ssr") && m.to_lowercase().contains("length limit") =>
            {
                AppError::TooLarge
            }
            ServerFnErrorErr::Deserialization(m) if cfg!(feature = "ssr") => {
                AppError::BadRequest(format!("The request could not be read: {m}"))
            }
            ServerFnErrorErr::Args(m) => {
                AppError::BadRequest(format!("The request's arguments are not valid: {m}"))
            }
            ServerFnErrorErr::MissingArg(m) => {
                AppError::BadRequest(format!("The request lacks the argument {m}."))
            }
            other => AppError::Transport(other.to_string()),
        }
    }

    /// A server function answering with this error: its HTTP status is the
    /// error's own (a client error is never a 500), set here, the one path
    /// every error answer takes.
    fn ser(&self) -> leptos::server_fn::Bytes {
        #[cfg(feature = "ssr")]
        ssr::answer_with(self);
        <Self::Encoder as leptos::server_fn::Encodes<Self>>::encode(self)
            .unwrap_or_else(|_| leptos::server_fn::Bytes::from_static(br#""Internal""#))
    }
}

impl AppError {
    /// The HTTP status this error is rendered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated | AppError::BadCredentials => 401,
            AppError::Forbidden => 403,
            AppError::Throttled(_) => 429,
            AppError::Invalid(_) => 422,
            AppError::BadRequest(_) => 400,
            AppError::TooLarge => 413,
            AppError::NotFound => 404,
            AppError::NotAllowed(_) => 403,
            AppError::Conflict(_) | AppError::Stale(_) => 409,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<lockstep_core::CoreError> for AppError {
    /// The core's verdict as the server function's answer, with the
    /// matching status (a client error is never a 500).
    fn from(err: lockstep_core::CoreError) -> Self {
        use lockstep_core::CoreError;
        match err {
            CoreError::Invalid(msg) => AppError::Invalid(msg),
            e @ CoreError::IdempotencyKeyReused => AppError::Invalid(e.to_string()),
            CoreError::NotFound => AppError::NotFound,
            CoreError::Forbidden(msg) => AppError::NotAllowed(msg),
            CoreError::Conflict(msg) => AppError::Conflict(msg),
            CoreError::Stale(s) => AppError::Stale(Box::new(StaleRecord {
                version: s.current_version,
                updated_by: s.updated_by.map(|e| e.name),
                updated_at: s.updated_at,
                fields: s.fields,
                values: Vec::new(),
            })),
            CoreError::VersionConflict { .. } => {
                AppError::Conflict("Someone else changed this meanwhile; reload and retry.".into())
            }
            other => {
                tracing::error!(error = ?other, "internal error in a server function");
                AppError::Internal
            }
        }
    }
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;

    /// Sets the status of the server function's response (or the page
    /// being rendered) to `err`'s; outside a request it does nothing.
    pub fn answer_with(err: &AppError) {
        use leptos::prelude::use_context;
        if let (Some(opts), Ok(code)) = (
            use_context::<leptos_axum::ResponseOptions>(),
            axum::http::StatusCode::from_u16(err.status()),
        ) {
            opts.set_status(code);
        }
    }
}
