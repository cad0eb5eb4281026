//! Endpoint health on PostgreSQL: loads what `store::health::plan` needs
//! and persists its plan inside the completion's transaction, publishing
//! the operational events there too (`events::publish_within`).
//!
//! Locking: the webhook rows whose counters may change are locked `FOR NO
//! KEY UPDATE` in id order (two nodes completing for one webhook apply
//! their outcomes one after the other, and never deadlock). A batch of
//! successes for a webhook whose counters are already zero, the common
//! case, reads without locking and writes nothing: a failure committed
//! concurrently is then simply ordered after the success.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;

use super::connect::store_error;
use super::events::{Fanned, publish_within};
use super::rows::{count, get, parsed, timestamp_opt};
use crate::domain::health::HealthCounters;
use crate::domain::{EventId, EventType, ProjectId, WebhookId};
use crate::store::health::{self, ExhaustedFacts, HealthRow};
use crate::store::{Completion, CompletionResult, PublishRequest, StoreResult};

/// Applies the health consequences of `completions`; returns the
/// operational events' fan-out, for `Publisher::after_commit`.
pub(super) async fn apply(
    tx: &Transaction<'_>,
    completions: &[Completion],
    results: &[CompletionResult],
) -> StoreResult<Vec<Fanned>> {
    let candidates = health::webhooks_to_load(completions, results);
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // Webhooks with a failure (or a disable, or an exhausted delivery) in
    // this batch; the rest only had successes.
    let troubled: HashSet<WebhookId> = completions
        .iter()
        .zip(results)
        .filter(|(c, r)| {
            **r == CompletionResult::Applied
                && (c.disable_webhook.is_some()
                    || c.next == crate::store::NextStep::Failed
                    || c.attempt.as_ref().is_some_and(|a| a.error_kind.is_some()))
        })
        .map(|(c, _)| c.webhook_id)
        .collect();
    let mut lock: Vec<String> = troubled.iter().map(ToString::to_string).collect();
    let calm: Vec<String> = candidates
        .iter()
        .filter(|id| !troubled.contains(id))
        .map(ToString::to_string)
        .collect();
    if !calm.is_empty() {
        let stmt = tx
            .prepare_cached("SELECT id FROM webhooks WHERE id = ANY($1) AND consecutive_failures > 0")
            .await
            .map_err(store_error)?;
        for row in tx.query(&stmt, &[&calm]).await.map_err(store_error)? {
            lock.push(get::<String>(&row, 0)?);
        }
    }
    if lock.is_empty() {
        return Ok(Vec::new());
    }
    lock.sort();
    let stmt = tx
        .prepare_cached(
            "SELECT id, project_id, state = 'enabled' AND delete_time IS NULL, consecutive_failures, failing_since
             FROM webhooks WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
        )
        .await
        .map_err(store_error)?;
    let mut rows = HashMap::new();
    for row in tx.query(&stmt, &[&lock]).await.map_err(store_error)? {
        rows.insert(
            parsed(&row, 0, "webhook id", WebhookId::parse)?,
            HealthRow {
                project_id: parsed(&row, 1, "project id", ProjectId::parse)?,
                enabled: get(&row, 2)?,
                counters: HealthCounters {
                    consecutive_failures: count(&row, 3)?,
                    failing_since: timestamp_opt(&row, 4)?,
                },
            },
        );
    }
    let exhausted_ids: Vec<String> = health::exhausted_to_load(completions, results)
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut exhausted = HashMap::new();
    if !exhausted_ids.is_empty() {
        let stmt = tx
            .prepare_cached(
                "SELECT d.id, d.event_id, e.type, d.attempt_count FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.id = ANY($1)",
            )
            .await
            .map_err(store_error)?;
        for row in tx.query(&stmt, &[&exhausted_ids]).await.map_err(store_error)? {
            exhausted.insert(
                parsed(&row, 0, "delivery id", crate::domain::DeliveryId::parse)?,
                ExhaustedFacts {
                    event_id: parsed(&row, 1, "event id", EventId::parse)?,
                    event_type: parsed(&row, 2, "event type", |s| EventType::parse(s).ok())?,
                    attempt_count: count(&row, 3)?,
                },
            );
        }
    }

    let now = completions.last().map(|c| c.now.as_millis());
    let plan = health::plan(completions, results, rows, &exhausted);
    for (webhook, counters) in &plan.counters {
        let stmt = tx
            .prepare_cached("UPDATE webhooks SET consecutive_failures = $2, failing_since = $3 WHERE id = $1")
            .await
            .map_err(store_error)?;
        let failures = i32::try_from(counters.consecutive_failures).unwrap_or(i32::MAX);
        tx.execute(
            &stmt,
            &[
                &webhook.to_string(),
                &failures,
                &counters.failing_since.map(|t| t.as_millis()),
            ],
        )
        .await
        .map_err(store_error)?;
    }
    for disable in &plan.disable {
        tx.execute(
            "UPDATE webhooks SET state = $2, state_reason = $3, update_time = $4, next_due_at = NULL
             WHERE id = $1 AND state = 'enabled' AND delete_time IS NULL",
            &[
                &disable.webhook_id.to_string(),
                &disable.state.as_str(),
                &disable.reason,
                &now,
            ],
        )
        .await
        .map_err(store_error)?;
    }
    let mut fanned = Vec::new();
    for (project, events) in health::events_by_project(plan.events) {
        let Some(now) = completions.last().map(|c| c.now) else {
            break;
        };
        let request = PublishRequest {
            project_id: project,
            events,
            idempotency: None,
            now,
            max_deliveries: usize::MAX,
        };
        let (_, due) = publish_within(tx, &request).await?;
        fanned.push(due);
    }
    Ok(fanned)
}

/// A user's re-enable starts the webhook's health afresh.
pub(super) async fn reset(tx: &Transaction<'_>, id: WebhookId) -> StoreResult<()> {
    tx.execute(
        "UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL WHERE id = $1",
        &[&id.to_string()],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}
