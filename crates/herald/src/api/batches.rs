//! `/v1/batches`: OpenAI-compatible batches (create, get, list, cancel).
//! The batch object and its statuses are exactly OpenAI's; instants are
//! Unix seconds.

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, echo};
use super::files::{ListView, list_params};
use super::job_webhook_config::{WebhookConfigBody, webhook_config};
use super::json::{JsonBody, OptionalJsonBody};
use super::path::ApiPath;
use crate::domain::batch::{
    self, Batch, BatchEndpoint, BatchError, BatchWebhooks, MAX_COMPLETION_WINDOW, RequestCounts,
    format_completion_window,
};
use crate::domain::job_webhook::JobWebhooks;
use crate::domain::{BatchId, EndpointUri, FileId, ProjectId, Timestamp};
use crate::store::batches::{CancelOutcome, NewBatch};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/batches", post(create).get(list))
        .route("/v1/batches/{batch_id}", get(get_batch))
        .route("/v1/batches/{batch_id}/cancel", post(cancel))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: Option<String>,
    metadata: Option<Box<RawValue>>,
    /// Herald's extension: per-batch webhooks (`api::job_webhook_config`).
    webhook_config: Option<WebhookConfigBody>,
}

const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;

/// `metadata`: at most 16 string pairs (OpenAI's limits); `null` or absent
/// is `null`. Returned as the stored JSON text.
fn metadata(raw: Option<&RawValue>) -> Result<String, ApiError> {
    let Some(raw) = raw.filter(|raw| raw.get() != "null") else {
        return Ok("null".into());
    };
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(raw.get())
        .map_err(|_| ApiError::invalid("metadata", "must be an object of string values"))?;
    if map.len() > MAX_METADATA_PAIRS
        || map
            .iter()
            .any(|(k, v)| k.chars().count() > MAX_METADATA_KEY_CHARS || v.chars().count() > MAX_METADATA_VALUE_CHARS)
    {
        return Err(ApiError::invalid(
            "metadata",
            format!(
                "at most {MAX_METADATA_PAIRS} pairs, keys up to {MAX_METADATA_KEY_CHARS} and values up to {MAX_METADATA_VALUE_CHARS} characters"
            ),
        ));
    }
    Ok(serde_json::to_string(&map).unwrap_or_else(|_| "null".into()))
}

/// `webhook_config` (absent or `null`: the project's webhooks only): the
/// same body, validation and SSRF policy as operations'; the rows are
/// attached by the store (`webhook_ids` empty here).
fn batch_webhooks(
    state: &AppState,
    body: Option<WebhookConfigBody>,
) -> Result<(Option<BatchWebhooks>, Vec<EndpointUri>), ApiError> {
    let Some(body) = body else {
        return Ok((None, Vec::new()));
    };
    let config = webhook_config(state, body)?;
    let webhooks = BatchWebhooks {
        job: JobWebhooks {
            mode: config.mode,
            format: config.format,
            webhook_ids: Vec::new(),
        },
        user_metadata: config.user_metadata,
    };
    Ok((Some(webhooks), config.uris))
}

/// OpenAI's `errors`: `{object: "list", data: [{code, message, param, line}]}`.
#[derive(Serialize)]
struct ErrorsView {
    object: &'static str,
    data: Vec<BatchError>,
}

#[derive(Serialize)]
pub(super) struct BatchView {
    id: BatchId,
    object: &'static str,
    endpoint: String,
    errors: Option<ErrorsView>,
    input_file_id: FileId,
    completion_window: String,
    status: &'static str,
    output_file_id: Option<FileId>,
    error_file_id: Option<FileId>,
    created_at: i64,
    in_progress_at: Option<i64>,
    expires_at: i64,
    finalizing_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    expired_at: Option<i64>,
    cancelling_at: Option<i64>,
    cancelled_at: Option<i64>,
    request_counts: RequestCounts,
    metadata: Box<RawValue>,
}

impl BatchView {
    fn new(batch: Batch) -> Self {
        let seconds = |at: Option<Timestamp>| at.map(Timestamp::as_unix_seconds);
        let metadata = RawValue::from_string(batch.metadata).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Self {
            id: batch.id,
            object: "batch",
            endpoint: batch.endpoint,
            errors: (!batch.errors.is_empty()).then_some(ErrorsView {
                object: "list",
                data: batch.errors,
            }),
            input_file_id: batch.input_file_id,
            completion_window: format_completion_window(batch.completion_window),
            status: batch.status.as_str(),
            output_file_id: batch.output_file_id,
            error_file_id: batch.error_file_id,
            created_at: batch.created_at.as_unix_seconds(),
            in_progress_at: seconds(batch.in_progress_at),
            expires_at: batch.expires_at.as_unix_seconds(),
            finalizing_at: seconds(batch.finalizing_at),
            completed_at: seconds(batch.completed_at),
            failed_at: seconds(batch.failed_at),
            expired_at: seconds(batch.expired_at),
            cancelling_at: seconds(batch.cancelling_at),
            cancelled_at: seconds(batch.cancelled_at),
            request_counts: batch.counts,
            metadata,
        }
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody { value, .. }: JsonBody<CreateBatch>,
) -> Result<Json<BatchView>, ApiError> {
    let project = principal.require_project()?;
    let (webhooks, webhook_uris) = batch_webhooks(&state, value.webhook_config)?;
    let endpoint = BatchEndpoint::parse(&value.endpoint).map_err(ApiError::invalid_field("endpoint"))?;
    let completion_window = match value.completion_window.as_deref() {
        None => MAX_COMPLETION_WINDOW,
        Some(text) => batch::parse_completion_window(text).map_err(ApiError::invalid_field("completion_window"))?,
    };
    let metadata = metadata(value.metadata.as_deref())?;
    let input = FileId::parse(&value.input_file_id).ok_or_else(|| {
        ApiError::invalid(
            "input_file_id",
            format!("{} is not a file id", echo(&value.input_file_id)),
        )
    })?;
    let file = state
        .store
        .get_file(project, input)
        .await?
        .ok_or_else(|| ApiError::invalid("input_file_id", format!("file {input} does not exist")))?;
    if file.purpose != "batch" {
        return Err(ApiError::invalid(
            "input_file_id",
            format!(
                "file {input} has purpose {:?}; a batch needs a file uploaded with purpose \"batch\"",
                file.purpose
            ),
        ));
    }
    let batch = state
        .store
        .create_batch(NewBatch {
            id: BatchId::generate(),
            project_id: project,
            input_file_id: input,
            endpoint: endpoint.as_str().to_owned(),
            completion_window,
            metadata,
            now: state.clock.now(),
            webhooks,
            webhook_uris,
        })
        .await
        .map_err(|error| match error {
            crate::store::StoreError::NotFound => {
                ApiError::invalid("input_file_id", format!("file {input} does not exist"))
            }
            other => other.into(),
        })?;
    Ok(Json(BatchView::new(batch)))
}

fn batch_id(text: &str) -> Result<BatchId, ApiError> {
    BatchId::parse(text).ok_or_else(|| ApiError::not_found("batch", text))
}

async fn load(state: &AppState, project: ProjectId, id: &str) -> Result<Batch, ApiError> {
    state
        .store
        .get_batch(project, batch_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("batch", id))
}

pub(super) async fn get_batch(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BatchView>, ApiError> {
    let project = principal.require_project()?;
    Ok(Json(BatchView::new(load(&state, project, &id).await?)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<ListView<BatchView>>, ApiError> {
    let project = principal.require_project()?;
    let (after, limit) = list_params(&query, BatchId::parse)?;
    let page = state.store.list_batches(project, after, limit).await?;
    let data: Vec<BatchView> = page.items.into_iter().map(BatchView::new).collect();
    Ok(Json(ListView {
        object: "list",
        first_id: data.first().map(|b| b.id.to_string()),
        last_id: data.last().map(|b| b.id.to_string()),
        data,
        has_more: page.has_more,
    }))
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    _body: OptionalJsonBody<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<BatchView>, ApiError> {
    let project = principal.require_project()?;
    match state
        .store
        .cancel_batch(project, batch_id(&id)?, state.clock.now())
        .await?
    {
        None => Err(ApiError::not_found("batch", &id)),
        Some(CancelOutcome::Cancelling(batch)) => Ok(Json(BatchView::new(*batch))),
        Some(CancelOutcome::Finished(status)) => Err(ApiError::Conflict(format!(
            "batch {id} is {}: only a validating or in_progress batch can be cancelled",
            status.as_str()
        ))),
    }
}
