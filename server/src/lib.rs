//! The `lockstep` server: configuration, the axum application (Leptos SSR,
//! JSON API, health and metrics), and the adapters around `lockstep-core`.
//! The binary (`main.rs`) only parses the command line and calls in here.
//!
//! Map:
//! - [`config`]: every setting, from flags and environment.
//! - [`application`]: building the state, binding, serving, shutting down.
//! - [`state`]: `AppState`, what every handler can reach.
//! - [`serve`]: the HTTP accept loop: connection cap, header and body
//!   read timeouts, graceful shutdown.
//! - [`security`]: security headers (CSP with a per-response nonce) on
//!   every response.
//! - [`caching`]: `Cache-Control` for assets, static files and pages.
//! - [`bootstrap`]: the first admin account on a fresh database.
//! - [`cluster`]: several nodes as one fleet: start-up guards, NATS
//!   between nodes, the node's lease and the dead nodes' sweep.
//! - [`hub`]: the realtime hub, Pusher protocol 7 over the channel log.
//! - [`telemetry`]: tracing output, human or JSON.
//! - [`metrics`]: the Prometheus recorder, request metrics, rejections.
//! - [`mqtt`]: the MQTT bridge to the lockers (gateway, results) and the
//!   embedded broker.
//! - [`demo`]: `--demo`'s three simulated locker banks.
//! - [`api_error`]: the JSON error shape of the API.
//! - [`principal`]: who is calling: a session cookie or a bearer token.
//! - [`guards`]: page redirects for signed-out visitors, same-origin check.
//! - [`routes`]: health checks and `/api/v1`.
#![recursion_limit = "256"]

pub mod api_error;
pub mod application;
pub mod bootstrap;
pub mod caching;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod guards;
pub mod hub;
pub mod metrics;
pub mod mqtt;
pub mod principal;
pub mod routes;
pub mod security;
pub mod serve;
pub mod state;
pub mod telemetry;

pub use application::{Application, StartError};
pub use config::{Secret, ServeConfig};
pub use state::AppState;
