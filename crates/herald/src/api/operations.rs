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
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, echo};
use super::json::{self, JsonBody, OptionalJsonBody};
use super::pagination::{next_page_token, page_request_with};
use super::path::ApiPath;
use crate::domain::job_webhook::{JobSignatureFormat, JobWebhookConfig, JobWebhookMode, JobWebhooks};
use crate::domain::operation::{
    self, Command, Operation, OperationError, OperationKind, OperationProgress, OperationState, WorkerName,
};
use crate::domain::{OperationId, ProjectId, Timestamp};
use crate::store::{
    DeleteOperationOutcome, JobEndpoint, OperationFilter, TransitionKey, TransitionOutcome, TransitionRequest,
};

/// `expire_after` when the client gives none.
const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A worker's lease when `:start` names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// `:wait` without `timeout`.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

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

/// `webhook_config`: per-job webhooks (see `domain::job_webhook`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookConfigBody {
    uris: Vec<String>,
    #[serde(default)]
    user_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `override` (default) or `additional`.
    #[serde(default)]
    mode: Option<String>,
    /// `standard` (default) or `jwt`.
    #[serde(default)]
    signature_format: Option<String>,
    /// For `jwt`: `RS256` (default) or `EdDSA`.
    #[serde(default)]
    jwt_algorithm: Option<String>,
}

/// Validates `webhook_config` (each URI through the same SSRF policy as
/// webhooks) into the config and the hidden rows to create.
fn webhook_config(state: &AppState, body: WebhookConfigBody) -> Result<(JobWebhookConfig, Vec<JobEndpoint>), ApiError> {
    let uris = body
        .uris
        .iter()
        .enumerate()
        .map(|(i, text)| super::webhooks::vetted_uri(state, text, &format!("webhook_config.uris[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = match body.mode.as_deref() {
        None | Some("override") => JobWebhookMode::Override,
        Some("additional") => JobWebhookMode::Additional,
        Some(_) => {
            return Err(ApiError::invalid(
                "webhook_config.mode",
                "expected \"override\" or \"additional\"",
            ));
        }
    };
    let format = match (body.signature_format.as_deref(), body.jwt_algorithm.as_deref()) {
        (None | Some("standard"), None) => JobSignatureFormat::Standard,
        (Some("jwt"), None | Some("RS256")) => JobSignatureFormat::JwtRs256,
        (Some("jwt"), Some("EdDSA")) => JobSignatureFormat::JwtEdDsa,
        (Some("jwt"), Some(_)) => {
            return Err(ApiError::invalid(
                "webhook_config.jwt_algorithm",
                "expected \"RS256\" or \"EdDSA\"",
            ));
        }
        (None | Some("standard"), Some(_)) => {
            return Err(ApiError::invalid(
                "webhook_config.jwt_algorithm",
                "only with signature_format \"jwt\"",
            ));
        }
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "webhook_config.signature_format",
                "expected \"standard\" or \"jwt\"",
            ));
        }
    };
    let config = JobWebhookConfig::new(uris, body.user_metadata.map(serde_json::Value::Object), mode, format)
        .map_err(ApiError::invalid_field("webhook_config.uris"))?;
    let endpoints = config
        .uris
        .iter()
        .map(|uri| JobEndpoint {
            id: crate::domain::WebhookId::generate(),
            uri: uri.clone(),
        })
        .collect();
    Ok((config, endpoints))
}

/// The `google.longrunning.Operation` view.
#[derive(Serialize)]
pub(super) struct OperationView {
    name: String,
    id: OperationId,
    done: bool,
    metadata: MetadataView,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OperationError>,
}

#[derive(Serialize)]
struct MetadataView {
    kind: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<OperationProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expire_time: Option<Timestamp>,
    /// The `sequence` of the operation's last event.
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_metadata: Option<serde_json::Value>,
    /// The per-job webhooks: mode, signature format, hidden webhook ids
    /// (their deliveries are in `/v1/deliveries`).
    #[serde(skip_serializing_if = "Option::is_none")]
    job_webhooks: Option<JobWebhooks>,
    progress_events: bool,
    create_time: Timestamp,
    update_time: Timestamp,
    expire_time: Timestamp,
}

impl From<Operation> for OperationView {
    fn from(operation: Operation) -> Self {
        let status = operation.status;
        let running_lease = status
            .lease
            .filter(|_| matches!(status.state, OperationState::Running | OperationState::Cancelling));
        Self {
            name: format!("operations/{}", operation.id),
            id: operation.id,
            done: status.state.is_done(),
            metadata: MetadataView {
                kind: operation.kind.as_str().to_owned(),
                state: status.state.as_str(),
                progress: status.progress,
                action: status.action,
                worker: running_lease.as_ref().map(|lease| lease.worker.as_str().to_owned()),
                lease_expire_time: running_lease.map(|lease| lease.expire_time),
                sequence: status.sequence,
                client_metadata: status.client_metadata,
                user_metadata: status.user_metadata,
                job_webhooks: status.job_webhooks,
                progress_events: status.progress_events,
                create_time: operation.create_time,
                update_time: status.update_time,
                expire_time: status.expire_time,
            },
            response: status.response,
            error: status.error,
        }
    }
}

#[derive(Serialize)]
pub(super) struct OperationList {
    operations: Vec<OperationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
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
    let mut endpoints = Vec::new();
    if let Some(body) = value.webhook_config {
        let (config, rows) = webhook_config(&state, body)?;
        operation.status.user_metadata = config.user_metadata;
        operation.status.job_webhooks = Some(JobWebhooks {
            mode: config.mode,
            format: config.format,
            webhook_ids: rows.iter().map(|row| row.id.to_string()).collect(),
        });
        endpoints = rows;
    }
    state.store.create_operation(operation.clone(), endpoints).await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    worker: String,
    #[serde(default)]
    lease_duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerBody {
    #[serde(default)]
    worker: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressBody {
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    percent: Option<f64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireActionBody {
    #[serde(default)]
    worker: Option<String>,
    action: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    response: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    #[serde(default)]
    worker: Option<String>,
    error: ErrorBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i32>,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// The command a verb and its body ask for.
fn command(verb: &str, raw: &[u8]) -> Result<Command, ApiError> {
    Ok(match verb {
        "start" => {
            let body: StartBody = json::parse(raw)?;
            let lease = match &body.lease_duration {
                None => DEFAULT_LEASE,
                Some(text) => parse_duration(text, "lease_duration")
                    .and_then(|d| within(d, Duration::from_secs(1), MAX_LEASE, "lease_duration"))?,
            };
            Command::Start {
                worker: WorkerName::parse(&body.worker).map_err(ApiError::invalid_field("worker"))?,
                lease,
            }
        }
        "heartbeat" => Command::Heartbeat {
            worker: worker(json::parse::<WorkerBody>(raw)?.worker)?,
        },
        "progress" => {
            let body: ProgressBody = json::parse(raw)?;
            Command::Progress {
                worker: worker(body.worker)?,
                progress: OperationProgress::new(body.percent, body.message.as_deref())
                    .map_err(ApiError::invalid_field("percent"))?,
            }
        }
        "requireAction" => {
            let body: RequireActionBody = json::parse(raw)?;
            Command::RequireAction {
                worker: worker(body.worker)?,
                action: serde_json::Value::Object(body.action),
            }
        }
        "resume" => {
            json::parse::<EmptyBody>(raw)?;
            Command::Resume
        }
        "complete" => {
            let body: CompleteBody = json::parse(raw)?;
            Command::Complete {
                worker: worker(body.worker)?,
                response: serde_json::Value::Object(body.response.unwrap_or_default()),
            }
        }
        "fail" => {
            let body: FailBody = json::parse(raw)?;
            Command::Fail {
                worker: worker(body.worker)?,
                error: OperationError::new(body.error.code.unwrap_or(OperationError::UNKNOWN), &body.error.message)
                    .map_err(ApiError::invalid_field("error"))?,
            }
        }
        "cancel" => {
            json::parse::<EmptyBody>(raw)?;
            Command::Cancel
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no such method :{} on operations (expected :start, :heartbeat, :progress, :requireAction, \
                 :resume, :complete, :fail or :cancel)",
                echo(other)
            )));
        }
    })
}

fn worker(name: Option<String>) -> Result<Option<WorkerName>, ApiError> {
    name.map(|name| WorkerName::parse(&name).map_err(ApiError::invalid_field("worker")))
        .transpose()
}

fn operation_id(text: &str) -> Result<OperationId, ApiError> {
    OperationId::parse(text).ok_or_else(|| ApiError::not_found("operation", text))
}

fn found(operation: Option<Operation>, id: &str) -> Result<Operation, ApiError> {
    operation.ok_or_else(|| ApiError::not_found("operation", id))
}

/// A duration such as `30s`, `1.5s`, `24h`.
fn parse_duration(text: &str, field: &str) -> Result<Duration, ApiError> {
    if let Some(seconds) = text.strip_suffix('s')
        && let Ok(seconds) = seconds.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok(Duration::from_secs_f64(seconds.min(1e9)));
    }
    humantime::parse_duration(text)
        .map_err(|_| ApiError::invalid(field, "expected a duration such as \"30s\", \"5m\" or \"24h\""))
}

fn within(duration: Duration, min: Duration, max: Duration, field: &str) -> Result<Duration, ApiError> {
    if duration < min || duration > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "must be from {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(duration)
}

/// `timeout` of `:wait` (default 30 s), cut to `max`: a wait must end
/// before the server's request timeout does.
fn wait_timeout(query: &RawQuery, max: Duration) -> Result<Duration, ApiError> {
    let mut timeout = DEFAULT_WAIT;
    for (name, value) in url::form_urlencoded::parse(query.0.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "timeout" => timeout = parse_duration(&value, "timeout")?,
            other => {
                return Err(ApiError::invalid(
                    super::error::truncate(other, super::error::MAX_ECHO_CHARS),
                    "unknown query parameter (expected timeout)",
                ));
            }
        }
    }
    Ok(timeout.min(max))
}
