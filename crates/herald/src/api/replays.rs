//! Replays: `POST /v1/webhooks/{id}:replay {since, until?, state?}` starts
//! one (`202` with the replay resource; `409` if a running replay of the
//! webhook overlaps the range), `GET /v1/replays/{id}` shows its progress,
//! `GET /v1/replays` lists the project's, newest first. The work itself is
//! `crate::replay`'s, in the background.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::pagination::{next_page_token, page_request};
use super::path::ApiPath;
use crate::domain::{ProjectId, ReplayId, Timestamp, WebhookId};
use crate::store::{CreatedReplay, NewReplay, Replay, ReplayFilter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339: deliveries created at or after this instant.
    since: String,
    /// RFC 3339: deliveries created before this instant (default: now).
    #[serde(default)]
    until: Option<String>,
    /// `failed` (default) or `all` (failed and succeeded).
    #[serde(default)]
    state: Option<String>,
}

#[derive(Serialize)]
pub(super) struct ReplayView {
    id: ReplayId,
    webhook_id: WebhookId,
    since: Timestamp,
    until: Timestamp,
    /// The filter: `failed` or `all`.
    filter: &'static str,
    /// `running`, `succeeded`, or `failed` (its webhook was deleted).
    state: &'static str,
    /// Deliveries examined so far.
    examined_count: u64,
    /// Copies queued so far (each a new pending delivery).
    requeued_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    create_time: Timestamp,
    update_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_time: Option<Timestamp>,
}

impl From<Replay> for ReplayView {
    fn from(replay: Replay) -> Self {
        Self {
            id: replay.id,
            webhook_id: replay.webhook_id,
            since: replay.since,
            until: replay.until,
            filter: replay.filter.as_str(),
            state: replay.state.as_str(),
            examined_count: replay.examined,
            requeued_count: replay.requeued,
            error: replay.error,
            create_time: replay.create_time,
            update_time: replay.update_time,
            finish_time: replay.finish_time,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ReplayList {
    replays: Vec<ReplayView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

fn instant(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-01-22T12:00:00Z"))
}

/// `:replay` on a webhook (dispatched from `webhooks::custom_method`).
pub(super) async fn create(
    state: &AppState,
    project: ProjectId,
    webhook: WebhookId,
    body: &[u8],
) -> Result<Response, ApiError> {
    let request: ReplayRequest = super::json::parse(if body.is_empty() { b"{}" } else { body })?;
    let filter = match request.state.as_deref() {
        None => ReplayFilter::Failed,
        Some(text) => {
            ReplayFilter::parse(text).ok_or_else(|| ApiError::invalid("state", "must be \"failed\" or \"all\""))?
        }
    };
    let now = state.clock.now();
    let since = instant("since", &request.since)?;
    let until = match &request.until {
        Some(text) => instant("until", text)?,
        None => now,
    };
    if request.until.is_none() && since >= now {
        return Err(ApiError::invalid("since", "must be in the past"));
    }
    if until <= since {
        return Err(ApiError::invalid("until", "must be after since"));
    }
    let created = state
        .store
        .create_replay(NewReplay {
            id: ReplayId::generate(),
            project_id: project,
            webhook_id: webhook,
            since,
            until,
            filter,
            now,
        })
        .await?;
    match created {
        CreatedReplay::Created(replay) => Ok((StatusCode::ACCEPTED, Json(ReplayView::from(replay))).into_response()),
        CreatedReplay::WebhookNotFound => Err(ApiError::not_found("webhook", &webhook.to_string())),
        CreatedReplay::Overlaps(running) => Err(ApiError::Conflict(format!(
            "replay {running} of this webhook is running over an overlapping range; wait for it to finish"
        ))),
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ReplayView>, ApiError> {
    let project = principal.require_project()?;
    let replay_id = ReplayId::parse(&id).ok_or_else(|| ApiError::not_found("replay", &id))?;
    let replay = state
        .store
        .get_replay(project, replay_id)
        .await?
        .ok_or_else(|| ApiError::not_found("replay", &id))?;
    Ok(Json(replay.into()))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<ReplayList>, ApiError> {
    let project = principal.require_project()?;
    let page = page_request(&query)?;
    if page
        .after
        .as_deref()
        .is_some_and(|after| ReplayId::parse(after).is_none())
    {
        return Err(ApiError::invalid(
            "page_token",
            "not a page token from a previous response",
        ));
    }
    let page = state.store.list_replays(project, page).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(ReplayList {
        replays: page.items.into_iter().map(ReplayView::from).collect(),
        next_page_token,
    }))
}
