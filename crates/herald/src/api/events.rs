//! `/v1/events`: publishing (single and batch) and reading an event back
//! with the state of its deliveries.
//!
//! A publish answers 202 only after the store has durably committed the
//! event with one delivery per matching enabled webhook. The payload is
//! serialised here, once; `data` keeps the exact bytes the producer sent.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::event_type_gate::EventTypeGate;
use super::json::JsonBody;
use super::json_check;
use super::path::ApiPath;
use super::rate_limit::{PublishLimiter, Refusal};
use crate::domain::{AttemptRecord, EventId, EventType, ProjectId, Timestamp};
use crate::store::{IdempotencyRecord, NewEvent, PublishOutcome, PublishRequest};

const IDEMPOTENCY_HEADER: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishEvent {
    #[serde(rename = "type")]
    event_type: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchCreate {
    events: Vec<PublishEvent>,
}

#[derive(Serialize)]
struct Accepted<'a> {
    id: EventId,
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: Timestamp,
}

pub(super) async fn publish(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<PublishLimiter>>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody { value, raw }: JsonBody<PublishEvent>,
) -> Result<Response, ApiError> {
    let project = principal.require_project()?;
    within_rate(&limiter, project, 1)?;
    let event = new_event(&state, &value, "")?;
    gate.check_publish(state.store.as_ref(), project, &event.event_type, value.data.get(), "")
        .await?;
    let response = serde_json::to_vec(&accepted(&event)).map_err(|e| ApiError::Internal(e.to_string()))?;
    commit(&state, project, vec![event], &headers, &raw, response).await
}

pub(super) async fn batch_create(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<PublishLimiter>>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    headers: HeaderMap,
    JsonBody { value, raw }: JsonBody<BatchCreate>,
) -> Result<Response, ApiError> {
    let project = principal.require_project()?;
    let max = state.limits.max_batch_events;
    if value.events.is_empty() || value.events.len() > max {
        return Err(ApiError::invalid("events", format!("send 1 to {max} events per batch")));
    }
    within_rate(&limiter, project, value.events.len())?;
    let events = value
        .events
        .iter()
        .enumerate()
        .map(|(index, event)| new_event(&state, event, &format!("events[{index}].")))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, (event, sent)) in events.iter().zip(&value.events).enumerate() {
        gate.check_publish(
            state.store.as_ref(),
            project,
            &event.event_type,
            sent.data.get(),
            &format!("events[{index}]."),
        )
        .await?;
    }
    #[derive(Serialize)]
    struct BatchAccepted<'a> {
        events: Vec<Accepted<'a>>,
    }
    let body = BatchAccepted {
        events: events.iter().map(accepted).collect(),
    };
    let response = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    commit(&state, project, events, &headers, &raw, response).await
}

/// Refuses a publish over the project's rate (429 with `Retry-After`).
fn within_rate(limiter: &PublishLimiter, project: ProjectId, events: usize) -> Result<(), ApiError> {
    match limiter.acquire(project, events) {
        Ok(()) => Ok(()),
        Err(Refusal::RetryAfter(wait)) => Err(ApiError::TooManyRequests {
            message: "this project publishes faster than limits.publish_rate_per_project allows; retry after the Retry-After seconds".into(),
            retry_after_secs: wait.as_secs_f64().ceil() as u64,
        }),
        Err(Refusal::LargerThanBurst { burst }) => Err(ApiError::invalid(
            "events",
            format!("{events} events in one request exceed limits.publish_burst_per_project ({burst}); send smaller batches"),
        )),
    }
}

fn accepted(event: &NewEvent) -> Accepted<'_> {
    Accepted {
        id: event.id,
        event_type: event.event_type.as_str(),
        timestamp: event.timestamp,
    }
}

/// Validates one event and serialises its payload, the bytes every attempt sends.
fn new_event(state: &AppState, event: &PublishEvent, field_prefix: &str) -> Result<NewEvent, ApiError> {
    let event_type =
        EventType::parse(&event.event_type).map_err(ApiError::invalid_field(format!("{field_prefix}type")))?;
    if crate::domain::operational::is_operational(&event_type) {
        return Err(ApiError::invalid(
            format!("{field_prefix}type"),
            "the webhook.* and delivery.* event types are Herald's own; choose another name",
        ));
    }
    let data = event.data.get();
    if !data.starts_with('{') {
        return Err(ApiError::invalid(
            format!("{field_prefix}data"),
            "data must be a JSON object",
        ));
    }
    json_check::check_data(data.as_bytes(), &format!("{field_prefix}data"))?;
    let event = NewEvent::new(event_type, state.clock.now(), data);
    let limit = state.limits.max_payload_bytes;
    if event.payload.len() > limit {
        return Err(ApiError::invalid(
            format!("{field_prefix}data"),
            format!(
                "the event payload would be {} bytes; the limit is {limit} (limits.max_payload_bytes)",
                event.payload.len()
            ),
        ));
    }
    Ok(event)
}

async fn commit(
    state: &AppState,
    project: ProjectId,
    events: Vec<NewEvent>,
    headers: &HeaderMap,
    raw: &[u8],
    response: Vec<u8>,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key(headers)?.map(|key| IdempotencyRecord {
        key,
        request_hash: Sha256::digest(raw).into(),
        response: response.clone(),
    });
    let count = events.len();
    let outcome = state
        .store
        .publish(PublishRequest {
            project_id: project,
            events,
            idempotency,
            now: state.clock.now(),
            max_deliveries: state.limits.max_fanout_per_request,
        })
        .await?;
    let (body, replayed) = match outcome {
        PublishOutcome::Published { .. } => {
            metrics::counter!("herald_events_published_total").increment(count as u64);
            (response, false)
        }
        PublishOutcome::Replayed { response } => (response, true),
    };
    let mut reply = (
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if replayed {
        reply
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(reply)
}

pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| {
            !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters"),
            )
        })?;
    Ok(Some(key.to_owned()))
}

#[derive(Serialize)]
pub(super) struct AttemptView {
    attempt_number: u32,
    start_time: Timestamp,
    duration_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_excerpt: Option<String>,
}

impl From<AttemptRecord> for AttemptView {
    fn from(record: AttemptRecord) -> Self {
        Self {
            attempt_number: record.number,
            start_time: record.start_time,
            duration_ms: record.duration.as_millis(),
            status_code: record.status_code,
            error_kind: record.error_kind.map(|kind| kind.as_str()),
            error_message: record.error_message,
            response_excerpt: record.response_excerpt,
        }
    }
}

#[derive(Serialize)]
struct DeliveryStatus {
    id: crate::domain::DeliveryId,
    webhook_id: crate::domain::WebhookId,
    state: &'static str,
    attempt_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt: Option<AttemptView>,
    /// Why the last attempt failed, or why the delivery was given up.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

#[derive(Serialize)]
pub(super) struct EventView {
    id: EventId,
    #[serde(rename = "type")]
    event_type: String,
    timestamp: Timestamp,
    data: Box<RawValue>,
    deliveries: Vec<DeliveryStatus>,
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<EventView>, ApiError> {
    let project = principal.require_project()?;
    let event_id = EventId::parse(&id).ok_or_else(|| ApiError::not_found("event", &id))?;
    let event = state
        .store
        .get_event(project, event_id)
        .await?
        .ok_or_else(|| ApiError::not_found("event", &id))?;
    #[derive(Deserialize)]
    struct Stored {
        data: Box<RawValue>,
    }
    let stored: Stored = serde_json::from_slice(&event.payload)
        .map_err(|e| ApiError::Internal(format!("stored payload of {id} is not valid: {e}")))?;
    let deliveries = event
        .deliveries
        .into_iter()
        .map(|d| DeliveryStatus {
            id: d.id,
            webhook_id: d.webhook_id,
            state: d.state.as_str(),
            attempt_count: d.attempt_count,
            next_attempt_time: d.next_attempt_time,
            last_attempt: d.last_attempt.map(Into::into),
            last_error: d.last_error,
        })
        .collect();
    Ok(Json(EventView {
        id: event.id,
        event_type: event.event_type.to_string(),
        timestamp: event.timestamp,
        data: stored.data,
        deliveries,
    }))
}
