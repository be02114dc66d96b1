//! The `lockstep` server: configuration, the axum application (Leptos SSR,
//! JSON API, health and metrics), and the adapters around `lockstep-core`.
//! The binary (`main.rs`) only parses the command line and calls in here.
//!
//! Map:
//! - [`config`]: every setting, from flags and environment.
//! - [`application`]: building the state, binding, serving, shutting down.
//! - [`bootstrap`]: the first admin account on a fresh database.
//! - [`telemetry`]: tracing output, human or JSON.
//! - [`metrics`]: the Prometheus recorder, request metrics, rejections.
//! - [`mqtt`]: the MQTT bridge to the lockers (gateway, results).
//! - [`api_error`]: the JSON error shape of the API.
//! - [`principal`]: who is calling: a session cookie or a bearer token.
//! - [`guards`]: page redirects for signed-out visitors, same-origin check.
//! - [`routes`]: health checks and `/api/v1`.
#![recursion_limit = "256"]

pub mod api_error;
pub mod application;
pub mod bootstrap;
pub mod config;
pub mod demo;
pub mod guards;
pub mod metrics;
pub mod mqtt;
pub mod principal;
pub mod routes;
pub mod telemetry;

pub use application::{AppState, Application, StartError};
pub use config::{Secret, ServeConfig};
