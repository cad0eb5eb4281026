//! `/v1/deliveries`: the delivery log (newest first, every attempt) and
//! `:redeliver`, one attempt now outside the schedule.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::events::AttemptView;
use super::pagination::{next_page_token, page_request_with};
use super::path::ApiPath;
use crate::delivery::manual::ManualError;
use crate::domain::{DeliveryId, DeliveryState, EventId, Timestamp, WebhookId};
use crate::store::{DeliveryDetail, DeliveryFilter, DeliverySummary};

#[derive(Serialize)]
pub(super) struct DeliveryView {
    id: DeliveryId,
    webhook_id: WebhookId,
    event_id: EventId,
    event_type: String,
    state: &'static str,
    /// Whether an attempt is in flight right now.
    in_flight: bool,
    attempt_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    create_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<Vec<AttemptView>>,
}

impl DeliveryView {
    fn new(summary: DeliverySummary, attempts: Option<Vec<AttemptView>>) -> Self {
        Self {
            id: summary.id,
            webhook_id: summary.webhook_id,
            event_id: summary.event_id,
            event_type: summary.event_type.to_string(),
            state: summary.state.as_str(),
            in_flight: summary.in_flight,
            attempt_count: summary.attempt_count,
            next_attempt_time: summary.next_attempt_time,
            last_error: summary.last_error,
            create_time: summary.create_time,
            attempts,
        }
    }
}

#[derive(Serialize)]
pub(super) struct DeliveryList {
    deliveries: Vec<DeliveryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

const PARAMETERS: &str = "webhook_id, event_id, state, since, until, page_size, page_token";

fn filter_parameter(filter: &mut DeliveryFilter, name: &str, value: &str) -> Result<bool, ApiError> {
    fn instant(field: &str, value: &str) -> Result<Option<Timestamp>, ApiError> {
        Timestamp::parse_rfc3339(value)
            .map(Some)
            .ok_or_else(|| ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-01-22T12:00:00Z"))
    }
    match name {
        _ if value.is_empty() && ["webhook_id", "event_id", "state", "since", "until"].contains(&name) => {}
        "webhook_id" => {
            filter.webhook_id =
                Some(WebhookId::parse(value).ok_or_else(|| ApiError::invalid("webhook_id", "not a webhook id"))?);
        }
        "event_id" => {
            filter.event_id =
                Some(EventId::parse(value).ok_or_else(|| ApiError::invalid("event_id", "not an event id"))?);
        }
        "state" => {
            filter.state = Some(match value {
                "pending" => DeliveryState::Pending,
                "succeeded" => DeliveryState::Succeeded,
                "failed" => DeliveryState::Failed,
                _ => return Err(ApiError::invalid("state", "must be pending, succeeded or failed")),
            });
        }
        "since" => filter.since = instant("since", value)?,
        "until" => filter.until = instant("until", value)?,
        _ => return Ok(false),
    }
    Ok(true)
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let project = principal.require_project()?;
    let mut filter = DeliveryFilter::default();
    let page = page_request_with(&query, PARAMETERS, |name, value| {
        filter_parameter(&mut filter, name, value)
    })?;
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        return Err(ApiError::invalid("until", "must not be before since"));
    }
    // A delivery id that is not the form of one continues nothing.
    if page
        .after
        .as_deref()
        .is_some_and(|after| DeliveryId::parse(after).is_none())
    {
        return Err(ApiError::invalid(
            "page_token",
            "not a page token from a previous response",
        ));
    }
    let page = state.store.list_deliveries(project, filter, page).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(DeliveryList {
        deliveries: page.items.into_iter().map(|d| DeliveryView::new(d, None)).collect(),
        next_page_token,
    }))
}

/// `{delivery_id}` or `{delivery_id}:verb`, split.
fn split_verb(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once(':') {
        Some((id, verb)) => (id, Some(verb)),
        None => (segment, None),
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
) -> Result<Json<DeliveryView>, ApiError> {
    let project = principal.require_project()?;
    let (id, verb) = split_verb(&segment);
    if verb.is_some() {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} takes POST",
            super::error::echo(&segment)
        )));
    }
    let delivery_id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery", id))?;
    let DeliveryDetail { summary, attempts } = state
        .store
        .get_delivery(project, delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery", id))?;
    Ok(Json(DeliveryView::new(
        summary,
        Some(attempts.into_iter().map(Into::into).collect()),
    )))
}

#[derive(Serialize)]
pub(super) struct AttemptOutcome {
    attempt: AttemptView,
}

/// `POST /v1/deliveries/{id}:redeliver`.
pub(super) async fn custom_method(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
) -> Result<Json<AttemptOutcome>, ApiError> {
    let project = principal.require_project()?;
    let (id, verb) = split_verb(&segment);
    match verb {
        Some("redeliver") => {}
        Some(other) => {
            return Err(ApiError::NotFound(format!(
                "no such method :{} on deliveries (expected :redeliver)",
                super::error::echo(other)
            )));
        }
        None => {
            return Err(ApiError::MethodNotAllowed(format!(
                "POST is not allowed on {}; to resend it, POST {}:redeliver",
                super::error::echo(&segment),
                super::error::echo(&segment)
            )));
        }
    }
    let delivery_id = DeliveryId::parse(id).ok_or_else(|| ApiError::not_found("delivery", id))?;
    let attempt = state
        .manual_attempts
        .redeliver(project, delivery_id)
        .await
        .map_err(|error| match error {
            ManualError::NotFound => ApiError::not_found("delivery", id),
            ManualError::InFlight => ApiError::Conflict(error.to_string()),
            ManualError::WebhookDeleted => {
                ApiError::Conflict(format!("delivery {} cannot be resent: {error}", super::error::echo(id)))
            }
            ManualError::Store(store) => store.into(),
        })?;
    Ok(Json(AttemptOutcome {
        attempt: attempt.into(),
    }))
}
