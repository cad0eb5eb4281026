//! The HTTP API (JSON, snake_case, Google-style `:verb` custom methods).
//!
//! Handlers parse wire DTOs into domain types, call the store, and map
//! results back to DTOs; they hold no business rules beyond validation.
//! Errors become responses only in [`error`].

pub mod auth;
mod batches;
mod controls;
mod deliveries;
pub mod error;
mod event_type_gate;
mod event_types;
mod events;
mod files;
mod health;
mod job_webhook_config;
mod json;
mod json_check;
mod jwks;
mod operation_wait;
mod operations;
mod pagination;
mod path;
mod projects;
pub mod rate_limit;
mod replays;
mod secrets;
pub mod server;
mod stats;
mod update_mask;
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
    /// Redeliveries and pings: attempts made now, outside the schedule.
    pub manual_attempts: Arc<crate::delivery::ManualAttempts>,
    /// Limits of the batch API (file size).
    pub batches: crate::config::BatchesConfig,
    /// The longest `:wait` long-poll: shorter than the server's request
    /// timeout, so a wait ends with its answer, not a 503.
    pub max_wait: std::time::Duration,
    /// Herald's own signing keys (JWKS, per-job webhooks).
    pub server_keys: Arc<crate::server_keys::ServerKeys>,
    /// The server's retry window (`delivery.max_age`): a webhook's own
    /// `retry_schedule` must fit in it.
    pub retry_window: std::time::Duration,
}

/// The routes a node with `role` serves: a worker-only node answers the
/// health and metrics endpoints and nothing else. Connection and
/// request-time limits are added by [`server::serve`].
pub fn router(state: AppState, role: crate::config::Role) -> Router {
    let body_limit = state.limits.max_request_bytes;
    let publish_limiter = std::sync::Arc::new(rate_limit::PublishLimiter::new(
        &state.limits,
        std::sync::Arc::clone(&state.clock),
    ));
    let event_type_gate = std::sync::Arc::new(event_type_gate::EventTypeGate::new(std::sync::Arc::clone(&state.clock)));
    let probes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics));
    let routes = if role.serves_api() {
        probes.merge(api_routes())
    } else {
        probes
    };
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(publish_limiter))
        .layer(axum::Extension(event_type_gate))
        .with_state(state)
}

fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route(
            "/v1/projects/{project_id}",
            get(projects::get).patch(event_types::patch_project),
        )
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
            get(webhooks::get)
                .patch(webhooks::update)
                .delete(webhooks::delete)
                .post(webhooks::custom_method),
        )
        .route("/v1/webhooks/{webhook_id}/stats", get(stats::get))
        .route("/v1/deliveries", get(deliveries::list))
        .route(
            "/v1/deliveries/{delivery_id}",
            get(deliveries::get).post(deliveries::custom_method),
        )
        .route("/v1/replays", get(replays::list))
        .route("/v1/replays/{replay_id}", get(replays::get))
        .route("/v1/operations", post(operations::create).get(operations::list))
        .route(
            "/v1/operations/{operation_id}",
            get(operations::get)
                .post(operations::custom_method)
                .delete(operations::delete),
        )
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route("/v1/signing_keys", get(jwks::list_keys))
        .route("/v1/signing_keys:rotate", post(jwks::rotate))
        .route("/v1/event_types", post(event_types::create).get(event_types::list))
        .route(
            "/v1/event_types/{name}",
            get(event_types::get)
                .patch(event_types::update)
                .delete(event_types::delete),
        )
        .route("/v1/events", post(events::publish))
        .route("/v1/events:batchCreate", post(events::batch_create))
        .route("/v1/events/{event_id}", get(events::get))
        .merge(files::routes())
        .merge(batches::routes())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {}", error::echo(uri.path())))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        error::echo(method.as_str()),
        error::echo(uri.path())
    ))
}

/// The longest `:wait` for a server whose requests time out after
/// `request_timeout`: a second less (half of it when that is shorter).
pub fn max_wait(request_timeout: std::time::Duration) -> std::time::Duration {
    let margin = std::time::Duration::from_secs(1).min(request_timeout / 2);
    request_timeout.saturating_sub(margin)
}
