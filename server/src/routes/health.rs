//! `GET /healthz` (the process answers) and `GET /readyz` (and so does its
//! database).

use axum::{extract::State, http::StatusCode, Json};
use serde_json::{json, Value};

use crate::application::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.services.db.ping().await {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok"})),
        )
    } else {
        tracing::warn!("readiness check failed: database unreachable");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "database": "unreachable"})),
        )
    }
}
