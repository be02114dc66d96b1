//! Metrics in Prometheus text at `GET /metrics`: request counts and
//! latencies by route and status, and refused input by reason. Uses the
//! `metrics` facade with `metrics-exporter-prometheus`.

use std::{net::SocketAddr, sync::OnceLock, time::Instant};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::{header, HeaderMap, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use lockstep_core::identity::tokens::same_secret;

use crate::state::AppState;

/// The process-wide recorder (installed once, shared by every app in the
/// process, as in the integration tests).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &buckets,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("lockstep_db_write_wait_seconds".into()),
                        &buckets,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("lockstep_hub_commit_to_send_seconds".into()),
                        &buckets,
                    )
                })
                .and_then(|b| {
                    // Up to the open timeout and past it.
                    b.set_buckets_for_metric(
                        Matcher::Full("lockstep_mqtt_command_round_trip_seconds".into()),
                        &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just
            // isn't global, and /metrics still answers.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Counts one refused input, labelled with why it was refused.
pub fn count_rejection(reason: &'static str) {
    metrics::counter!("lockstep_rejections_total", "reason" => reason).increment(1);
}

pub async fn track_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `/metrics`: with `LOCKSTEP_METRICS_TOKEN` set, for `Authorization:
/// Bearer <token>` callers; without it, for loopback clients only.
pub async fn render(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let allowed = match &state.metrics_token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| same_secret(given.trim(), token.expose())),
        // Loopback, and not relayed by a proxy on this host (whose own
        // address would otherwise let the whole internet in).
        None => {
            peer.ip().to_canonical().is_loopback()
                && !headers.contains_key("x-forwarded-for")
                && !headers.contains_key(header::FORWARDED)
        }
    };
    if !allowed {
        count_rejection("metrics_refused");
        tracing::info!(%peer, "/metrics refused");
        // The API's error shape, written here: `api_error` counts its
        // rejections through this module.
        let body = serde_json::json!({"error": {
            "code": "forbidden",
            "message": "/metrics needs `Authorization: Bearer <LOCKSTEP_METRICS_TOKEN>`, \
                        or a loopback client when no token is set",
        }});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    // Outbox health as gauges: dead letters are what an operator must see.
    match lockstep_core::eventstore::outbox::counts(&state.services.db).await {
        Ok((pending, done, dead)) => {
            for (status, n) in [("pending", pending), ("done", done), ("dead", dead)] {
                metrics::gauge!("lockstep_outbox_jobs", "status" => status).set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "outbox counts unavailable for /metrics"),
    }
    match lockstep_core::lockers::online_count(&state.services).await {
        Ok(n) => metrics::gauge!("lockstep_lockers_online").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "lockers online unavailable for /metrics"),
    }
    match lockstep_core::workers::health(&state.services, lockstep_core::now_ms()).await {
        Ok(h) => lockstep_core::workers::record_gauges(&h),
        Err(e) => tracing::warn!(error = %e, "the stall report is unavailable for /metrics"),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
