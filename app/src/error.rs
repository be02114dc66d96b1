//! `AppError`: what a server function can fail with, worded for the person
//! reading it. Internal causes are logged on the server and never shown.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
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
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
    #[error("Could not reach the server ({0}).")]
    Transport(String),
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
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
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }
}

#[cfg(feature = "ssr")]
impl From<lockstep_core::CoreError> for AppError {
    fn from(err: lockstep_core::CoreError) -> Self {
        use lockstep_core::CoreError;
        match err {
            CoreError::Invalid(msg) => AppError::Invalid(msg),
            other => {
                tracing::error!(error = ?other, "internal error in a server function");
                AppError::Internal
            }
        }
    }
}
