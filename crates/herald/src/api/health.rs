//! Liveness, readiness and Prometheus metrics (no authentication: bind the
//! listener to a private interface or filter these paths at the proxy).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use super::error::ApiError;

pub(super) async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready when the database answers.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(json!({ "status": "ready" })))
}

/// Refreshes the queue gauges from the store, then renders every metric.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let Some(handle) = &state.metrics else {
        return Ok((StatusCode::NOT_FOUND, String::from("metrics are disabled\n")));
    };
    let now = state.clock.now();
    let stats = state.store.queue_stats(now).await?;
    metrics::gauge!("herald_deliveries_pending").set(stats.pending as f64);
    metrics::gauge!("herald_deliveries_retrying").set(stats.retrying as f64);
    metrics::gauge!("herald_deliveries_in_flight").set(stats.in_flight as f64);
    let oldest = stats
        .oldest_due
        .map_or(0.0, |due| now.duration_since(due).as_secs_f64());
    metrics::gauge!("herald_oldest_due_delivery_age_seconds").set(oldest);
    Ok((StatusCode::OK, handle.render()))
}
