//! `GET /healthz` (the process answers) and `GET /readyz` (not shutting
//! down, its database answers and its workers keep up: see
//! `lockstep_core::workers::health`).

use axum::{extract::State, http::StatusCode, Json};
use lockstep_core::{now_ms, workers};
use serde_json::{json, Value};

use crate::state::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        );
    }
    if !state.services.db.ping().await {
        tracing::warn!("readiness check failed: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "unreachable"})),
        );
    }
    match workers::health(&state.services, now_ms()).await {
        Ok(h) if h.stalled() => {
            tracing::warn!(stalls = ?h.stalls, "readiness check failed: workers stalled");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "stalled", "database": "ok", "workers": h})),
            )
        }
        Ok(h) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok", "workers": h})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed: no stall report");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "ok", "workers": e.to_string()})),
            )
        }
    }
}
