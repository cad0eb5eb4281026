//! SQL for the delivery queue: claim, complete, release, recover, stats.
//!
//! The claim visits webhooks, not deliveries: it takes webhooks whose
//! `next_due_at` hint has passed (oldest first, skipping those already at
//! their in-flight cap), then each one's oldest due deliveries through the
//! `deliveries_due` index. A webhook with a million due deliveries therefore
//! costs one index range per claim, and never stands in front of another
//! webhook's work.
//!
//! A leased delivery keeps its lease expiry in `next_attempt_at`, so an
//! expired lease is simply due again; reclaiming it logs the attempt that
//! never reported back as `interrupted`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{count, parsed, parsed_opt, store_error, timestamp};
use super::secrets::signing_secrets;
use crate::domain::controls::{ClaimState, EndpointControls, Ordering};
use crate::domain::secret::Keyring;
use crate::domain::webhook::EndpointUri;
use crate::domain::{AttemptErrorKind, AttemptRecord, DeliveryId, EventId, Timestamp, WebhookId};
use crate::store::{
    ClaimRequest, ClaimedBatch, Completion, CompletionResult, DeliveryJob, EndpointSnapshot, LeaseToken, NextStep,
    QueueStats, Release, StoreResult,
};

/// Webhooks visited per claim at most.
const ENDPOINTS_PER_CLAIM: i64 = 256;

pub(super) fn claim(
    conn: &Connection,
    request: &ClaimRequest,
    token: LeaseToken,
    keyring: &Keyring,
) -> StoreResult<ClaimedBatch> {
    let mut room: HashMap<WebhookId, u32> = request.room.iter().copied().collect();
    let saturated = |room: &HashMap<WebhookId, u32>| -> String {
        let ids: Vec<String> = room
            .iter()
            .filter(|(_, left)| **left == 0)
            .map(|(id, _)| id.to_string())
            .collect();
        serde_json::Value::from(ids).to_string()
    };
    let now = request.now.as_millis();

    let endpoints: Vec<(WebhookId, EndpointUri, EndpointControls, Option<i64>)> = conn
        .prepare_cached(
            "SELECT id, uri, rate_limit_per_second, max_concurrency, ordering, retry_schedule, rate_next_us
             FROM webhooks
             WHERE next_due_at <= ?1 AND state = 'enabled' AND delete_time IS NULL
               AND id NOT IN (SELECT value FROM json_each(?2))
             ORDER BY next_due_at LIMIT ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![now, saturated(&room), ENDPOINTS_PER_CLAIM], |row| {
                Ok((
                    parsed(row, 0, "webhook id", WebhookId::parse)?,
                    parsed(row, 1, "uri", |s| EndpointUri::parse(s).ok())?,
                    super::webhooks::controls_from_row(row, 2)?,
                    row.get(6)?,
                ))
            })?
            .collect()
        })
        .map_err(store_error)?;

    let mut jobs = Vec::new();
    for (webhook, uri, controls, rate_next_us) in endpoints {
        let remaining = request.limit.saturating_sub(jobs.len());
        if remaining == 0 {
            break;
        }
        let state = ClaimState {
            now: request.now,
            room: room.get(&webhook).copied().unwrap_or(request.default_room),
            max_leased: request.max_leased_per_webhook,
            leased: leased_count(conn, webhook, request.now)?,
            rate_next_us,
        };
        let limit = controls.claim_limit(state);
        if limit.capped {
            // At its cap (locally or in the store): not due for this
            // claimer now, so not part of `next_due` either.
            room.insert(webhook, 0);
            continue;
        }
        let take = usize::try_from(limit.take).unwrap_or(0).min(remaining);
        let due = if take == 0 {
            Vec::new()
        } else if controls.ordering == Ordering::Fifo {
            fifo_head(conn, webhook, request.now)?
        } else {
            due_deliveries(conn, webhook, request.now, take)?
        };
        if !due.is_empty() {
            let taken = u32::try_from(due.len()).unwrap_or(u32::MAX);
            if let Some(next_us) = controls.rate_after_claim(&state, taken) {
                conn.prepare_cached("UPDATE webhooks SET rate_next_us = ?2 WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), next_us]))
                    .map_err(store_error)?;
            }
            let endpoint = Arc::new(EndpointSnapshot {
                webhook_id: webhook,
                uri,
                secrets: signing_secrets(conn, keyring, webhook, request.now)?,
                retry_schedule: controls.retry_schedule.clone(),
            });
            let free = room.get(&webhook).copied().unwrap_or(request.default_room);
            room.insert(webhook, free.saturating_sub(taken));
            for row in due {
                jobs.push(lease(conn, row, &endpoint, request, token)?);
            }
        }
        refresh_due_hint(conn, webhook)?;
    }

    let next_due = conn
        .prepare_cached(
            "SELECT MIN(next_due_at) FROM webhooks
             WHERE next_due_at IS NOT NULL AND state = 'enabled' AND delete_time IS NULL
               AND id NOT IN (SELECT value FROM json_each(?1))",
        )
        .and_then(|mut stmt| stmt.query_row([saturated(&room)], |row| row.get::<_, Option<i64>>(0)))
        .map_err(store_error)?
        .map(Timestamp::from_millis);
    Ok(ClaimedBatch { jobs, next_due })
}

struct DueRow {
    id: DeliveryId,
    event_id: EventId,
    event_time: Timestamp,
    leased: bool,
    attempt_count: u32,
}

fn due_deliveries(conn: &Connection, webhook: WebhookId, now: Timestamp, limit: usize) -> StoreResult<Vec<DueRow>> {
    conn.prepare_cached(
        "SELECT id, event_id, event_time, state, attempt_count FROM deliveries
         WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL AND next_attempt_at <= ?2
         ORDER BY next_attempt_at LIMIT ?3",
    )
    .and_then(|mut stmt| {
        stmt.query_map(
            params![
                webhook.to_string(),
                now.as_millis(),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| {
                Ok(DueRow {
                    id: parsed(row, 0, "delivery id", DeliveryId::parse)?,
                    event_id: parsed(row, 1, "event id", EventId::parse)?,
                    event_time: timestamp(row, 2)?,
                    leased: row.get::<_, String>(3)? == "leased",
                    attempt_count: count(row, 4)?,
                })
            },
        )?
        .collect()
    })
    .map_err(store_error)
}

/// A FIFO webhook's head (its oldest unfinished delivery by event time,
/// then id) if it is due: nothing behind it may go first.
fn fifo_head(conn: &Connection, webhook: WebhookId, now: Timestamp) -> StoreResult<Vec<DueRow>> {
    let head = conn
        .prepare_cached(
            "SELECT id, event_id, event_time, state, attempt_count, next_attempt_at FROM deliveries
             WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL
             ORDER BY event_time, id LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([webhook.to_string()], |row| {
                Ok((
                    DueRow {
                        id: parsed(row, 0, "delivery id", DeliveryId::parse)?,
                        event_id: parsed(row, 1, "event id", EventId::parse)?,
                        event_time: timestamp(row, 2)?,
                        leased: row.get::<_, String>(3)? == "leased",
                        attempt_count: count(row, 4)?,
                    },
                    timestamp(row, 5)?,
                ))
            })
            .optional()
        })
        .map_err(store_error)?;
    Ok(head
        .filter(|(_, due)| *due <= now)
        .map(|(row, _)| row)
        .into_iter()
        .collect())
}

/// Unexpired leases the webhook holds now, whoever holds them.
fn leased_count(conn: &Connection, webhook: WebhookId, now: Timestamp) -> StoreResult<u32> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_leased
         WHERE webhook_id = ?1 AND state = 'leased' AND next_attempt_at > ?2",
    )
    .and_then(|mut stmt| stmt.query_row(params![webhook.to_string(), now.as_millis()], |row| count(row, 0)))
    .map_err(store_error)
}

fn lease(
    conn: &Connection,
    row: DueRow,
    endpoint: &Arc<EndpointSnapshot>,
    request: &ClaimRequest,
    token: LeaseToken,
) -> StoreResult<DeliveryJob> {
    let mut attempts = row.attempt_count;
    if row.leased {
        // The lease expired: whoever held it never reported back.
        let interrupted = AttemptRecord::lease_lapsed(attempts + 1, request.now);
        insert_attempt(conn, row.id, &interrupted, "INSERT OR IGNORE")?;
        attempts += 1;
    }
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'leased', lease_token = ?2, next_attempt_at = ?3, attempt_count = ?4,
                last_error = CASE WHEN ?5 THEN 'interrupted' ELSE last_error END
         WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            row.id.to_string(),
            token.0,
            request.lease_until.as_millis(),
            attempts,
            row.leased
        ])
    })
    .map_err(store_error)?;
    let payload: Vec<u8> = conn
        .prepare_cached("SELECT payload FROM events WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([row.event_id.to_string()], |r| r.get(0)))
        .map_err(store_error)?;
    Ok(DeliveryJob {
        delivery_id: row.id,
        lease: token,
        event_id: row.event_id,
        event_time: row.event_time,
        attempt_number: attempts + 1,
        payload: Bytes::from(payload),
        endpoint: Arc::clone(endpoint),
    })
}

/// Records outcomes (see `complete_deliveries`) and adds the attempts to the
/// statistics rollup, then applies their consequences for endpoint health (a `410` or the auto-disable rule disabling the webhook,
/// operational events), all in the caller's transaction. The bool: whether
/// operational events made deliveries.
pub(super) fn complete(conn: &Connection, completions: &[Completion]) -> StoreResult<(Vec<CompletionResult>, bool)> {
    let results = complete_deliveries(conn, completions)?;
    super::stats::record(conn, completions)?;
    let delivered = super::health::apply(conn, completions, &results)?;
    Ok((results, delivered))
}

fn complete_deliveries(conn: &Connection, completions: &[Completion]) -> StoreResult<Vec<CompletionResult>> {
    let mut results = Vec::with_capacity(completions.len());
    for completion in completions {
        // The attempt happened whatever became of the lease: always log it
        // (replacing an `interrupted` placeholder for the same number).
        if let Some(attempt) = &completion.attempt {
            insert_attempt(conn, completion.delivery_id, attempt, "INSERT OR REPLACE")?;
        }
        let now = completion.now.as_millis();
        let (state, next_attempt_at, finish_time) = match completion.next {
            NextStep::Succeeded => ("succeeded", None, Some(now)),
            NextStep::RetryAt(at) => ("pending", Some(at.as_millis()), None),
            NextStep::Failed => ("failed", None, Some(now)),
        };
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET state = ?3, attempt_count = COALESCE(?4, attempt_count), next_attempt_at = ?5,
                        lease_token = NULL, last_status = COALESCE(?6, CASE WHEN ?4 IS NULL THEN last_status END),
                        last_error = ?7, finish_time = ?8
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'leased'",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    completion.delivery_id.to_string(),
                    completion.lease.0,
                    state,
                    completion.attempt.as_ref().map(|a| a.number),
                    next_attempt_at,
                    completion.attempt.as_ref().and_then(|a| a.status_code),
                    completion.last_error,
                    finish_time,
                ])
            })
            .map_err(store_error)?;
        if changed == 0 {
            results.push(CompletionResult::Stale);
            continue;
        }
        match completion.next {
            NextStep::RetryAt(at) => lower_due_hint(conn, completion.webhook_id, at)?,
            // A FIFO webhook's hint still names its head's lease: the next
            // delivery may go now.
            NextStep::Succeeded | NextStep::Failed => lower_fifo_hint(conn, completion.webhook_id, completion.now)?,
        }
        results.push(CompletionResult::Applied);
    }
    Ok(results)
}

pub(super) fn release(conn: &Connection, releases: &[Release], now: Timestamp) -> StoreResult<()> {
    let mut webhooks = HashSet::new();
    for release in releases {
        let started = release.interrupted.is_some();
        let released: Option<String> = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?3, lease_token = NULL,
                        attempt_count = attempt_count + ?4,
                        last_error = CASE WHEN ?4 THEN 'interrupted' ELSE last_error END
                 WHERE id = ?1 AND lease_token = ?2 AND state = 'leased' RETURNING webhook_id",
            )
            .and_then(|mut stmt| {
                let params = params![
                    release.delivery_id.to_string(),
                    release.lease.0,
                    now.as_millis(),
                    i64::from(started)
                ];
                stmt.query_row(params, |row| row.get(0)).optional()
            })
            .map_err(store_error)?;
        let Some(webhook) = released else { continue };
        if let Some(interrupted) = &release.interrupted {
            insert_attempt(conn, release.delivery_id, interrupted, "INSERT OR IGNORE")?;
        }
        webhooks.extend(WebhookId::parse(&webhook));
    }
    for webhook in webhooks {
        lower_due_hint(conn, webhook, now)?;
    }
    Ok(())
}

/// Ends every lease at once, logging each attempt as `interrupted`. Only
/// at open: the directory lock makes every lease a dead process's.
pub(super) fn recover_all_leases(conn: &Connection, now: Timestamp) -> StoreResult<u64> {
    let leased: Vec<(String, u32)> = conn
        .prepare(
            "UPDATE deliveries SET state = 'pending', attempt_count = attempt_count + 1, next_attempt_at = ?1,
                    lease_token = NULL, last_error = 'interrupted'
             WHERE next_attempt_at IS NOT NULL AND state = 'leased' RETURNING id, attempt_count",
        )
        .and_then(|mut stmt| {
            stmt.query_map([now.as_millis()], |row| Ok((row.get(0)?, count(row, 1)?)))?
                .collect()
        })
        .map_err(store_error)?;
    for (id, number) in &leased {
        if let Some(id) = DeliveryId::parse(id) {
            insert_attempt(conn, id, &AttemptRecord::lease_lapsed(*number, now), "INSERT OR IGNORE")?;
        }
    }
    conn.execute(
        &format!("UPDATE webhooks AS w SET next_due_at = CASE WHEN w.state = 'enabled' AND w.delete_time IS NULL THEN {EXACT_HINT} END"),
        [],
    )
    .map_err(store_error)?;
    Ok(u64::try_from(leased.len()).unwrap_or(u64::MAX))
}

pub(super) fn stats(conn: &Connection, now: Timestamp) -> StoreResult<QueueStats> {
    let (pending, retrying, in_flight): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(attempt_count > 0), 0), COALESCE(SUM(state = 'leased'), 0)
             FROM deliveries INDEXED BY deliveries_due WHERE next_attempt_at IS NOT NULL",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))))
        .map_err(store_error)?;
    // Held deliveries (webhook disabled) are not "due": they wait on a person.
    let oldest_due: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN((SELECT d.next_attempt_at FROM deliveries d
                         WHERE d.webhook_id = w.id AND d.next_attempt_at <= ?1 AND d.state = 'pending'
                         ORDER BY d.next_attempt_at LIMIT 1))
             FROM webhooks w WHERE w.state = 'enabled' AND w.delete_time IS NULL",
        )
        .and_then(|mut stmt| stmt.query_row([now.as_millis()], |row| row.get(0)))
        .map_err(store_error)?;
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(QueueStats {
        pending: to_u64(pending),
        retrying: to_u64(retrying),
        in_flight: to_u64(in_flight),
        oldest_due: oldest_due.map(Timestamp::from_millis),
    })
}

/// The exact hint of the webhook row aliased `w` (per-endpoint controls
/// included): its earliest unfinished delivery's due time (a FIFO
/// webhook's: its head's, the oldest by event time, since nothing behind
/// the head may go first), never earlier than the rate limiter admits the
/// next send. `NULL` when nothing is unfinished.
const EXACT_HINT: &str = "CASE WHEN w.ordering = 'fifo' THEN
        (SELECT MAX(d.next_attempt_at, COALESCE((w.rate_next_us + 999) / 1000, 0))
         FROM deliveries d
         WHERE d.webhook_id = w.id AND d.next_attempt_at IS NOT NULL ORDER BY d.event_time, d.id LIMIT 1)
    ELSE
        (SELECT MAX(d.next_attempt_at, COALESCE((w.rate_next_us + 999) / 1000, 0)) FROM deliveries d
         WHERE d.webhook_id = w.id AND d.next_attempt_at IS NOT NULL ORDER BY d.next_attempt_at LIMIT 1)
    END";

/// Makes the webhook's hint no later than `at` (a delivery became due
/// then), but never earlier than its rate limiter admits the next send.
pub(super) fn lower_due_hint(conn: &Connection, webhook: WebhookId, at: Timestamp) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE webhooks SET next_due_at = MAX(MIN(COALESCE(next_due_at, ?2), ?2), COALESCE((rate_next_us + 999) / 1000, 0))
         WHERE id = ?1 AND state = 'enabled' AND delete_time IS NULL",
    )
    .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), at.as_millis()]))
    .map_err(store_error)?;
    Ok(())
}

/// [`lower_due_hint`] for a FIFO webhook only (a no-op for others).
fn lower_fifo_hint(conn: &Connection, webhook: WebhookId, at: Timestamp) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE webhooks SET next_due_at = MAX(MIN(COALESCE(next_due_at, ?2), ?2), COALESCE((rate_next_us + 999) / 1000, 0))
         WHERE id = ?1 AND ordering = 'fifo' AND state = 'enabled' AND delete_time IS NULL",
    )
    .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), at.as_millis()]))
    .map_err(store_error)?;
    Ok(())
}

/// Recomputes the webhook's hint exactly; `NULL` unless it is enabled and
/// has unfinished deliveries.
pub(super) fn refresh_due_hint(conn: &Connection, webhook: WebhookId) -> StoreResult<()> {
    let sql = format!(
        "UPDATE webhooks AS w SET next_due_at = CASE WHEN w.state = 'enabled' AND w.delete_time IS NULL THEN {EXACT_HINT} END
         WHERE w.id = ?1"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| stmt.execute([webhook.to_string()]))
        .map_err(store_error)?;
    Ok(())
}

fn insert_attempt(conn: &Connection, delivery: DeliveryId, attempt: &AttemptRecord, verb: &str) -> StoreResult<()> {
    let sql = format!(
        "{verb} INTO attempts (delivery_id, attempt_number, start_time, duration_ms, status_code, response_excerpt,
                               error_kind, error_message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.execute(params![
                delivery.to_string(),
                attempt.number,
                attempt.start_time.as_millis(),
                i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX),
                attempt.status_code,
                attempt.response_excerpt,
                attempt.error_kind.map(AttemptErrorKind::as_str),
                attempt.error_message,
            ])
        })
        .map_err(store_error)?;
    Ok(())
}

pub(super) fn attempt_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        number: count(row, 0)?,
        start_time: timestamp(row, 1)?,
        duration: Duration::from_millis(u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0)),
        status_code: row.get(3)?,
        response_excerpt: row.get(4)?,
        error_kind: parsed_opt(row, 5, "attempt error kind", AttemptErrorKind::parse)?,
        error_message: row.get(6)?,
    })
}
