//! SQL for publishing events (with their fan-out) and reading them back.

use std::collections::HashMap;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::queue::{attempt_from_row, lower_due_hint};
use super::rows::{count, parsed, store_error, timestamp, timestamp_opt};
use super::webhooks::enabled_subscribers;
use crate::domain::fanout;
use crate::domain::job_webhook::JobWebhooks;
use crate::domain::{DeliveryId, EventId, EventType, ProjectId, Timestamp, WebhookId};
use crate::store::codec::{delivery_state, next_attempt_time};
use crate::store::{DeliveryView, EventDetail, Progress, PublishOutcome, PublishRequest, StoreError, StoreResult};

/// Commits the events, one pending delivery per matching enabled webhook
/// (due now), and the idempotency record, all in the caller's transaction.
///
/// This is also the seam for events Herald emits itself: a writer job that
/// changes a job's status (or disables a webhook) calls it in the same
/// transaction, so the change and its event commit together or not at all.
/// The caller notifies the store's work notifier after the commit when
/// deliveries were made.
pub(super) fn publish(conn: &Connection, request: &PublishRequest) -> StoreResult<PublishOutcome> {
    publish_to(conn, request, None)
}

/// [`publish`] of a job's event: to the job's own webhooks and, as its
/// mode says, the project's (`JobWebhooks::recipients`).
pub(super) fn publish_to(
    conn: &Connection,
    request: &PublishRequest,
    job: Option<&JobWebhooks>,
) -> StoreResult<PublishOutcome> {
    let project = request.project_id.to_string();
    if let Some(idempotency) = &request.idempotency {
        let previous: Option<(Vec<u8>, Vec<u8>)> = conn
            .prepare_cached("SELECT request_hash, response FROM idempotency_keys WHERE project_id = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![project, idempotency.key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(store_error)?;
        if let Some((hash, response)) = previous {
            return if hash == idempotency.request_hash {
                Ok(PublishOutcome::Replayed { response })
            } else {
                Err(StoreError::IdempotencyConflict)
            };
        }
    }

    let subscribers = enabled_subscribers(conn, request.project_id)?;
    let subscribers = match job {
        Some(job) => job.recipients(subscribers),
        None => subscribers,
    };
    fanout::check_limit(
        fanout::delivery_count(request.events.iter().map(|e| &e.event_type), &subscribers),
        request.max_deliveries,
    )
    .map_err(StoreError::LimitExceeded)?;
    let now = request.now.as_millis();
    let mut insert_event = conn
        .prepare_cached("INSERT INTO events (id, project_id, type, timestamp, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
        .map_err(store_error)?;
    let mut insert_delivery = conn
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
        )
        .map_err(store_error)?;
    let mut fanned_out: HashMap<WebhookId, usize> = HashMap::new();
    let mut deliveries = 0;
    for event in &request.events {
        let event_id = event.id.to_string();
        insert_event
            .execute(params![
                event_id,
                project,
                event.event_type.as_str(),
                event.timestamp.as_millis(),
                &event.payload[..]
            ])
            .map_err(store_error)?;
        for webhook in fanout::recipients(&event.event_type, &subscribers) {
            insert_delivery
                .execute(params![
                    DeliveryId::generate().to_string(),
                    event_id,
                    webhook.to_string(),
                    project,
                    event.timestamp.as_millis(),
                    now
                ])
                .map_err(store_error)?;
            *fanned_out.entry(webhook).or_default() += 1;
            deliveries += 1;
        }
    }
    for webhook in fanned_out.keys() {
        lower_due_hint(conn, *webhook, request.now)?;
    }
    if let Some(idempotency) = &request.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (project_id, key, request_hash, response, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                project,
                idempotency.key,
                &idempotency.request_hash[..],
                idempotency.response,
                now
            ])
        })
        .map_err(store_error)?;
    }
    Ok(PublishOutcome::Published { deliveries })
}

pub(super) fn get_event(conn: &Connection, project: ProjectId, id: EventId) -> StoreResult<Option<EventDetail>> {
    let event = conn
        .prepare_cached("SELECT id, type, timestamp, payload FROM events WHERE id = ?1 AND project_id = ?2")
        .and_then(|mut stmt| {
            stmt.query_row([id.to_string(), project.to_string()], |row| {
                Ok(EventDetail {
                    id: parsed(row, 0, "event id", EventId::parse)?,
                    event_type: parsed(row, 1, "event type", |s| EventType::parse(s).ok())?,
                    timestamp: timestamp(row, 2)?,
                    payload: Bytes::from(row.get::<_, Vec<u8>>(3)?),
                    deliveries: Vec::new(),
                })
            })
            .optional()
        })
        .map_err(store_error)?;
    let Some(mut event) = event else { return Ok(None) };

    let mut deliveries = conn
        .prepare_cached(
            "SELECT id, webhook_id, state, attempt_count, next_attempt_at, last_error FROM deliveries
             WHERE event_id = ?1 ORDER BY id",
        )
        .map_err(store_error)?;
    let mut last_attempt = conn
        .prepare_cached(
            "SELECT attempt_number, start_time, duration_ms, status_code, response_excerpt, error_kind, error_message
             FROM attempts WHERE delivery_id = ?1 ORDER BY attempt_number DESC LIMIT 1",
        )
        .map_err(store_error)?;
    let views: Vec<DeliveryView> = deliveries
        .query_map([id.to_string()], |row| {
            let stored: String = row.get(2)?;
            let (state, in_flight) = delivery_state(&stored);
            let next_attempt_time = next_attempt_time(state, in_flight, timestamp_opt(row, 4)?);
            Ok(DeliveryView {
                id: parsed(row, 0, "delivery id", DeliveryId::parse)?,
                webhook_id: parsed(row, 1, "webhook id", WebhookId::parse)?,
                state,
                attempt_count: count(row, 3)?,
                next_attempt_time,
                last_attempt: None,
                last_error: row.get(5)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(store_error)?;
    for mut view in views {
        view.last_attempt = last_attempt
            .query_row([view.id.to_string()], attempt_from_row)
            .optional()
            .map_err(store_error)?;
        event.deliveries.push(view);
    }
    Ok(Some(event))
}

/// Idempotency records deleted per call: one prune never holds the writer long.
const PRUNE_CHUNK: i64 = 10_000;

/// Deletes up to `PRUNE_CHUNK` idempotency records older than `before`.
pub(super) fn prune_idempotency_keys(conn: &Connection, before: Timestamp) -> StoreResult<Progress> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (project_id, key) IN
                (SELECT project_id, key FROM idempotency_keys WHERE create_time < ?1 LIMIT ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![before.as_millis(), PRUNE_CHUNK]))
        .map_err(store_error)?;
    let deleted = u64::try_from(deleted).unwrap_or(u64::MAX);
    Ok(if deleted < PRUNE_CHUNK as u64 {
        Progress::Done(deleted)
    } else {
        Progress::More(deleted)
    })
}
