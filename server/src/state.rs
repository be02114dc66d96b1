//! `AppState`: what every handler, extractor and middleware can reach.
//! Built once by `application`; read through `State<AppState>` or, for the
//! parts, `FromRef`.

use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use lockstep_core::Services;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Secret;

/// What every handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub services: Services,
    pub metrics: PrometheusHandle,
    /// `scheme://host[:port]` that state-changing requests must come from,
    /// when configured.
    pub public_origin: Option<String>,
    /// The bearer token `/metrics` asks for; without one, `/metrics`
    /// answers loopback clients only.
    pub metrics_token: Option<Secret>,
    /// The realtime hub's app keys (they sign `/broadcasting/auth`
    /// answers).
    pub pusher: std::sync::Arc<crate::hub::keys::AppKeys>,
    /// Set at SIGTERM: `/readyz` answers 503 from then on, so a load
    /// balancer sends nobody new while this process finishes.
    pub draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
}
