//! `/v1/operations`: long-running operations in the `google.longrunning`
//! shape. Clients create, get, list, cancel, delete and `:wait`; workers
//! drive them with `:start`, `:heartbeat`, `:progress`, `:requireAction`,
//! `:resume`, `:complete` and `:fail`. Every rule about what may happen
//! when lives in `domain::operation::state`; here only wire parsing.
//!
//! A refused transition is `409` naming the current state. A transition
//! sent again with the same `Idempotency-Key` and body is answered as the
//! first was (`idempotent-replayed: true`).

use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, echo};
use super::json::{JsonBody, OptionalJsonBody};
use super::pagination::{next_page_token, page_request_with};
use super::path::ApiPath;
use crate::domain::job_webhook::JobWebhooks;
use crate::domain::operation::{self, Command, Operation, OperationKind, OperationState};
use crate::domain::{OperationId, ProjectId};
use crate::store::{DeleteOperationOutcome, OperationFilter, TransitionKey, TransitionOutcome, TransitionRequest};

mod input;
mod view;

use super::job_webhook_config::{WebhookConfigBody, webhook_config};
use input::{command, found, operation_id, parse_duration, wait_timeout};
use view::{OperationList, OperationView};

/// `expire_after` when the client gives none.
const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOperation {
    kind: String,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    expire_after: Option<String>,
    /// Opt in to `operation.progress` events (at most one per 5 s).
    #[serde(default)]
    progress_events: bool,
    #[serde(default)]
    webhook_config: Option<WebhookConfigBody>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody { value, .. }: JsonBody<CreateOperation>,
) -> Result<(StatusCode, Json<OperationView>), ApiError> {
    let project = principal.require_project()?;
    let kind = OperationKind::parse(&value.kind).map_err(ApiError::invalid_field("kind"))?;
    let expire_after = match &value.expire_after {
        None => DEFAULT_EXPIRE_AFTER,
        Some(text) => operation::check_expire_after(parse_duration(text, "expire_after")?)
            .map_err(ApiError::invalid_field("expire_after"))?,
    };
    let mut operation = Operation::new(
        project,
        kind,
        value.metadata.map(serde_json::Value::Object),
        value.progress_events,
        expire_after,
        state.clock.now(),
    );
    let mut uris = Vec::new();
    if let Some(body) = value.webhook_config {
        let config = webhook_config(&state, body)?;
        operation.status.user_metadata = config.user_metadata;
        operation.status.job_webhooks = Some(JobWebhooks {
            mode: config.mode,
            format: config.format,
            // Filled in by the store with the rows it attaches.
            webhook_ids: Vec::new(),
        });
        uris = config.uris;
    }
    let operation = state.store.create_operation(operation, uris).await?;
    Ok((StatusCode::CREATED, Json(operation.into())))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<OperationList>, ApiError> {
    let project = principal.require_project()?;
    let mut filter = OperationFilter::default();
    let page = page_request_with(&query, "page_size, page_token, state, kind", |name, value| {
        match name {
            "state" => {
                filter.state = Some(OperationState::parse(value).ok_or_else(|| {
                    ApiError::invalid(
                        "state",
                        "expected pending, running, requires_action, cancelling, succeeded, failed, cancelled or expired",
                    )
                })?);
            }
            "kind" => filter.kind = Some(OperationKind::parse(value).map_err(ApiError::invalid_field("kind"))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let page = state.store.list_operations(project, filter, page).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(OperationList {
        operations: page.items.into_iter().map(Into::into).collect(),
        next_page_token,
    }))
}

/// `GET /v1/operations/{id}` and `GET /v1/operations/{id}:wait`.
pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
    query: RawQuery,
) -> Result<Json<OperationView>, ApiError> {
    let project = principal.require_project()?;
    match segment.split_once(':') {
        None => {
            if query.0.as_deref().is_some_and(|q| !q.is_empty()) {
                return Err(ApiError::invalid("query", "GET on an operation takes no parameters"));
            }
            let id = operation_id(&segment)?;
            Ok(Json(
                found(state.store.get_operation(project, id).await?, &segment)?.into(),
            ))
        }
        Some((id, "wait")) => {
            let timeout = wait_timeout(&query, state.max_wait)?;
            let operation = super::operation_wait::wait(&state, project, operation_id(id)?, timeout).await?;
            Ok(Json(found(operation, id)?.into()))
        }
        Some((_, verb)) => Err(ApiError::NotFound(format!(
            "no such method :{} for GET on operations (expected :wait)",
            echo(verb)
        ))),
    }
}

pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let project = principal.require_project()?;
    let id = operation_id(&segment)?;
    match state.store.delete_operation(project, id).await? {
        DeleteOperationOutcome::Deleted => Ok(Json(serde_json::json!({}))),
        DeleteOperationOutcome::NotFound => Err(ApiError::not_found("operation", &segment)),
        DeleteOperationOutcome::NotDone(current) => Err(ApiError::Conflict(format!(
            "the operation is {}; only a done operation can be deleted (cancel it first)",
            current.as_str()
        ))),
    }
}

/// `POST /v1/operations/{id}:verb`: a client's `:cancel` or a worker's
/// transition.
pub(super) async fn custom_method(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
    headers: HeaderMap,
    OptionalJsonBody(body): OptionalJsonBody<serde_json::Value>,
) -> Result<Response, ApiError> {
    let project = principal.require_project()?;
    let Some((id_text, verb)) = segment.split_once(':') else {
        return Err(ApiError::MethodNotAllowed(format!(
            "POST is not allowed on {}; methods are :start, :heartbeat, :progress, :requireAction, :resume, \
             :complete, :fail, :cancel",
            echo(&segment)
        )));
    };
    let id = operation_id(id_text)?;
    let body = match body {
        serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
        other => other,
    };
    let raw = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let command = command(verb, &raw)?;
    let idempotency = super::events::idempotency_key(&headers)?.map(|key| TransitionKey {
        key,
        request_hash: Sha256::new()
            .chain_update(verb.as_bytes())
            .chain_update([0])
            .chain_update(&raw)
            .finalize()
            .into(),
    });
    transition(&state, project, id, id_text, command, idempotency).await
}

async fn transition(
    state: &AppState,
    project: ProjectId,
    id: OperationId,
    id_text: &str,
    command: Command,
    idempotency: Option<TransitionKey>,
) -> Result<Response, ApiError> {
    let outcome = state
        .store
        .transition_operation(TransitionRequest {
            project_id: project,
            id,
            command,
            now: state.clock.now(),
            idempotency,
        })
        .await
        .map_err(|error| match error {
            crate::store::StoreError::NotFound => ApiError::not_found("operation", id_text),
            other => other.into(),
        })?;
    let (operation, replayed) = match outcome {
        TransitionOutcome::Applied(operation) => (operation, false),
        TransitionOutcome::Replayed(operation) => (operation, true),
        TransitionOutcome::Refused(refusal) => return Err(ApiError::Conflict(refusal.to_string())),
    };
    let mut response = Json(OperationView::from(operation)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
