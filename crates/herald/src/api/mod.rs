//! The HTTP API (JSON, snake_case, Google-style `:verb` custom methods).
//!
//! Handlers parse wire DTOs into domain types, call the store, and map
//! results back to DTOs; they hold no business rules beyond validation.
//! Errors become responses only in [`error`].

pub mod auth;
pub mod error;
mod events;
mod health;
mod json;
mod pagination;
mod projects;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::clock::SharedClock;
use crate::config::LimitsConfig;
use crate::net::ssrf::AddressPolicy;
use crate::store::Store;
use auth::Authenticator;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: Arc<Authenticator>,
    pub clock: SharedClock,
    /// Vets webhook URIs with literal addresses at create/update time.
    pub address_policy: Arc<AddressPolicy>,
    pub limits: LimitsConfig,
    pub metrics: Option<PrometheusHandle>,
}

/// The routes a node with `role` serves: a worker-only node answers the
/// health and metrics endpoints and nothing else.
pub fn router(state: AppState, role: crate::config::Role) -> Router {
    let body_limit = state.limits.max_request_bytes;
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    let routes = if role.serves_api() { probes.merge(api_routes()) } else { probes };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(deadline))
        .with_state(state)
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route("/v1/projects/{project_id}", get(projects::get))
        .route(
            "/v1/projects/{project_id}/api_keys",
            post(projects::create_key).get(projects::list_keys),
        )
        .route(
            "/v1/projects/{project_id}/api_keys/{key_id}",
            axum::routing::delete(projects::revoke_key),
        )
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{webhook_id}",
            get(webhooks::get).patch(webhooks::update).delete(webhooks::delete),
        )
        .route("/v1/events", post(events::publish))
        .route("/v1/events:batchCreate", post(events::batch_create))
        .route("/v1/events/{event_id}", get(events::get))
}

/// The longest a request may take, body upload included.
const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Bounds every request, so a stalled client or an overloaded store cannot
/// hold a handler forever. A publish cut off here may still commit (its
/// write is already queued): retrying with the same `Idempotency-Key` is safe.
async fn deadline(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(REQUEST_DEADLINE, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {}s; it may still take effect: retry with the same Idempotency-Key",
            REQUEST_DEADLINE.as_secs()
        ))
        .into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
