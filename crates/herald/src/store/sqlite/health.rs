//! Endpoint health on SQLite: loads what `store::health::plan` needs and
//! persists its plan, inside the completion's writer transaction, and
//! publishes the operational events through the ordinary `publish` in that
//! same transaction.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{count, parsed, store_error, timestamp_opt};
use crate::domain::fanout;
use crate::domain::health::HealthCounters;
use crate::domain::{DeliveryId, EventId, EventType, ProjectId, WebhookId};
use crate::store::health::{self, ExhaustedFacts, HealthRow};
use crate::store::{Completion, CompletionResult, PublishOutcome, PublishRequest, StoreResult};

/// Applies the health consequences of `completions`; returns whether
/// operational events made deliveries (the caller wakes the dispatcher).
pub(super) fn apply(conn: &Connection, completions: &[Completion], results: &[CompletionResult]) -> StoreResult<bool> {
    let ids = health::webhooks_to_load(completions, results);
    if ids.is_empty() {
        return Ok(false);
    }
    let mut rows = HashMap::new();
    for id in ids {
        if let Some(row) = load_row(conn, id)? {
            rows.insert(id, row);
        }
    }
    let mut exhausted = HashMap::new();
    for id in health::exhausted_to_load(completions, results) {
        if let Some(facts) = load_exhausted(conn, id)? {
            exhausted.insert(id, facts);
        }
    }
    let now = completions.last().map(|c| c.now);
    let plan = health::plan(completions, results, rows, &exhausted);
    for (webhook, counters) in &plan.counters {
        conn.prepare_cached("UPDATE webhooks SET consecutive_failures = ?2, failing_since = ?3 WHERE id = ?1")
            .and_then(|mut stmt| {
                stmt.execute(params![
                    webhook.to_string(),
                    counters.consecutive_failures,
                    counters.failing_since.map(|t| t.as_millis())
                ])
            })
            .map_err(store_error)?;
    }
    for disable in &plan.disable {
        conn.prepare_cached(
            "UPDATE webhooks SET state = ?2, state_reason = ?3, update_time = ?4, next_due_at = NULL
             WHERE id = ?1 AND state = 'enabled' AND delete_time IS NULL",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                disable.webhook_id.to_string(),
                disable.state.as_str(),
                disable.reason,
                now.map(|t| t.as_millis())
            ])
        })
        .map_err(store_error)?;
    }
    let mut delivered = false;
    for (project, events) in health::events_by_project(plan.events) {
        let Some(now) = now else { break };
        // An operational event nobody would receive is not stored.
        let subscribers = super::webhooks::enabled_subscribers(conn, project)?;
        let events: Vec<_> = events
            .into_iter()
            .filter(|e| fanout::recipients(&e.event_type, &subscribers).next().is_some())
            .collect();
        if events.is_empty() {
            continue;
        }
        let outcome = super::events::publish(
            conn,
            &PublishRequest {
                project_id: project,
                events,
                idempotency: None,
                now,
                // A project's webhooks are bounded; Herald's own events are
                // never refused for their fan-out.
                max_deliveries: usize::MAX,
            },
        )?;
        if let PublishOutcome::Published { deliveries } = outcome {
            delivered |= deliveries > 0;
        }
    }
    Ok(delivered)
}

fn load_row(conn: &Connection, id: WebhookId) -> StoreResult<Option<HealthRow>> {
    conn.prepare_cached(
        "SELECT project_id, state = 'enabled' AND delete_time IS NULL, consecutive_failures, failing_since
         FROM webhooks WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([id.to_string()], |row| {
            Ok(HealthRow {
                project_id: parsed(row, 0, "project id", ProjectId::parse)?,
                enabled: row.get(1)?,
                counters: HealthCounters {
                    consecutive_failures: count(row, 2)?,
                    failing_since: timestamp_opt(row, 3)?,
                },
            })
        })
        .optional()
    })
    .map_err(store_error)
}

fn load_exhausted(conn: &Connection, id: DeliveryId) -> StoreResult<Option<ExhaustedFacts>> {
    conn.prepare_cached(
        "SELECT d.event_id, e.type, d.attempt_count FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.query_row([id.to_string()], |row| {
            Ok(ExhaustedFacts {
                event_id: parsed(row, 0, "event id", EventId::parse)?,
                event_type: parsed(row, 1, "event type", |s| EventType::parse(s).ok())?,
                attempt_count: count(row, 2)?,
            })
        })
        .optional()
    })
    .map_err(store_error)
}

/// A user's re-enable starts the webhook's health afresh.
pub(super) fn reset(conn: &Connection, id: WebhookId) -> StoreResult<()> {
    conn.prepare_cached("UPDATE webhooks SET consecutive_failures = 0, failing_since = NULL WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id.to_string()]))
        .map_err(store_error)?;
    Ok(())
}
