//! `GET /v1/webhooks/{id}/stats`: attempts by outcome and latency
//! percentiles over the last hour and the last day, from the per-minute
//! rollup (`store::stats`): one primary-key range of at most a day of
//! one webhook's cells, cheap enough to poll.
//!
//! A window is whole minutes: "last hour" is the current minute and the 59
//! before it. Latency is the attempt's duration (request sent to status
//! received, or to the failure), over every attempt in the window,
//! reported as the upper bound of its bucket (`domain::stats`).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::path::ApiPath;
use crate::domain::stats::{minute_of, percentile_ms};
use crate::domain::{Timestamp, WebhookId};
use crate::store::StatsCell;

#[derive(Serialize)]
pub(super) struct StatsView {
    webhook_id: WebhookId,
    time: Timestamp,
    last_hour: WindowView,
    last_day: WindowView,
}

#[derive(Serialize)]
struct WindowView {
    attempts: u64,
    /// Attempts per outcome: `success` or an error kind (`http_status`,
    /// `timeout`, `connect`, ...).
    outcomes: BTreeMap<String, u64>,
    latency_ms: Latency,
}

#[derive(Serialize)]
struct Latency {
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
}

fn window(cells: &[StatsCell], from_minute: i64) -> WindowView {
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut buckets: HashMap<u32, u64> = HashMap::new();
    for cell in cells.iter().filter(|c| c.minute >= from_minute) {
        *outcomes.entry(cell.outcome.clone()).or_default() += cell.count;
        *buckets.entry(cell.bucket).or_default() += cell.count;
    }
    let histogram: Vec<(u32, u64)> = buckets.into_iter().collect();
    WindowView {
        attempts: outcomes.values().sum(),
        outcomes,
        latency_ms: Latency {
            p50: percentile_ms(&histogram, 0.5),
            p90: percentile_ms(&histogram, 0.9),
            p99: percentile_ms(&histogram, 0.99),
        },
    }
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StatsView>, ApiError> {
    let project = principal.require_project()?;
    let webhook = WebhookId::parse(&id).ok_or_else(|| ApiError::not_found("webhook", &id))?;
    let now = state.clock.now();
    let minute = minute_of(now);
    let cells = state
        .store
        .webhook_stats(project, webhook, minute - 1439)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    Ok(Json(StatsView {
        webhook_id: webhook,
        time: now,
        last_hour: window(&cells, minute - 59),
        last_day: window(&cells, minute - 1439),
    }))
}
