//! The delivery queue on PostgreSQL: claim, complete, release, stats, and
//! ending a dead node's leases.
//!
//! Claim (one short transaction): lock due webhooks `FOR NO KEY UPDATE
//! SKIP LOCKED` (two nodes never claim for one webhook at once, and neither
//! waits for the other), count each one's unexpired leases across
//! all nodes (the per-endpoint cap holds globally), lease its oldest due
//! deliveries `FOR UPDATE SKIP LOCKED` under a fresh token and this node's
//! id, recompute the webhooks' hints, commit. The HTTP work happens
//! after the commit; completions are fenced by the token.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::hints;
use super::rows::{count, get, parsed, parsed_opt, timestamp};
use super::secrets::signing_secrets;
use crate::domain::controls::{ClaimState, Ordering};
use crate::domain::secret::Keyring;
use crate::domain::webhook::EndpointUri;
use crate::domain::{AttemptErrorKind, AttemptRecord, DeliveryId, EventId, Timestamp, WebhookId};
use crate::store::{
    ClaimRequest, ClaimedBatch, Completion, CompletionResult, DeliveryJob, EndpointSnapshot, LeaseToken, NextStep,
    QueueStats, Release, StoreResult,
};

/// Webhooks visited per claim at most.
const ENDPOINTS_PER_CLAIM: i64 = 256;

pub(super) async fn claim(
    client: &impl GenericClient,
    request: &ClaimRequest,
    token: LeaseToken,
    node: &str,
    keyring: &Keyring,
) -> StoreResult<(ClaimedBatch, Vec<String>)> {
    let now = request.now.as_millis();
    let room: HashMap<WebhookId, u32> = request.room.iter().copied().collect();
    let saturated: Vec<String> = room
        .iter()
        .filter(|(_, left)| **left == 0)
        .map(|(id, _)| id.to_string())
        .collect();
    // Two nodes never claim for one webhook at once: the second skips it
    // (its work is taken by the first). Publishes do not lock webhook rows
    // (see `hints`), so a hot webhook is not skipped for a publish.
    let stmt = client
        .prepare_cached(
            "SELECT w.id, w.uri, w.rate_limit_per_second, w.max_concurrency, w.ordering, w.retry_schedule, w.rate_next_us
             FROM webhooks w
             WHERE w.next_due_at <= $1 AND w.state = 'enabled' AND w.delete_time IS NULL AND NOT (w.id = ANY($2))
             ORDER BY w.next_due_at LIMIT $3
             FOR NO KEY UPDATE OF w SKIP LOCKED",
        )
        .await
        .map_err(store_error)?;
    let endpoints = client
        .query(&stmt, &[&now, &saturated, &ENDPOINTS_PER_CLAIM])
        .await
        .map_err(store_error)?;
    // Counted in a statement of its own, after the locks are held: under
    // READ COMMITTED a new statement sees the leases another node committed
    // just before we took its webhook's lock (a count in the locking
    // statement would use the older snapshot and let the cap be exceeded).
    let locked: Vec<String> = endpoints
        .iter()
        .map(|row| get::<String>(row, 0))
        .collect::<StoreResult<_>>()?;
    let held: HashMap<String, i64> = if locked.is_empty() {
        HashMap::new()
    } else {
        let stmt = client
            .prepare_cached(
                "SELECT webhook_id, COUNT(*) FROM deliveries
                 WHERE webhook_id = ANY($1) AND state = 'leased' AND next_attempt_at > $2
                 GROUP BY webhook_id",
            )
            .await
            .map_err(store_error)?;
        client
            .query(&stmt, &[&locked, &now])
            .await
            .map_err(store_error)?
            .iter()
            .map(|row| Ok((get::<String>(row, 0)?, get::<i64>(row, 1)?)))
            .collect::<StoreResult<_>>()?
    };

    let lease = client
        .prepare_cached(
            "WITH due AS (
                SELECT id, state AS old_state FROM deliveries
                WHERE webhook_id = $1 AND next_attempt_at IS NOT NULL AND next_attempt_at <= $2
                ORDER BY next_attempt_at LIMIT $3
                FOR UPDATE SKIP LOCKED)
             UPDATE deliveries d SET state = 'leased', lease_token = $4, lease_node = $5, next_attempt_at = $6,
                    attempt_count = d.attempt_count + CASE WHEN due.old_state = 'leased' THEN 1 ELSE 0 END,
                    last_error = CASE WHEN due.old_state = 'leased' THEN 'interrupted' ELSE d.last_error END
             FROM due WHERE d.id = due.id
             RETURNING d.id, d.event_id, d.event_time, d.attempt_count, due.old_state = 'leased'",
        )
        .await
        .map_err(store_error)?;

    // A FIFO webhook's head (oldest unfinished by event time, then id), if
    // due. The head is found first and only then locked, SKIP LOCKED: if a
    // completion is writing it, nothing is taken this time (taking the one
    // behind it would break the order; waiting for it could deadlock with
    // that completion, which locks the webhook row after the delivery).
    let lease_head = client
        .prepare_cached(
            "WITH head AS (
                SELECT id FROM deliveries
                WHERE webhook_id = $1 AND next_attempt_at IS NOT NULL
                ORDER BY event_time, id LIMIT 1),
             locked AS (
                SELECT d.id, d.state AS old_state, d.next_attempt_at FROM deliveries d JOIN head ON d.id = head.id
                WHERE d.next_attempt_at IS NOT NULL
                FOR UPDATE OF d SKIP LOCKED)
             UPDATE deliveries d SET state = 'leased', lease_token = $3, lease_node = $4, next_attempt_at = $5,
                    attempt_count = d.attempt_count + CASE WHEN locked.old_state = 'leased' THEN 1 ELSE 0 END,
                    last_error = CASE WHEN locked.old_state = 'leased' THEN 'interrupted' ELSE d.last_error END
             FROM locked WHERE d.id = locked.id AND locked.next_attempt_at <= $2
             RETURNING d.id, d.event_id, d.event_time, d.attempt_count, locked.old_state = 'leased'",
        )
        .await
        .map_err(store_error)?;
    let set_rate = client
        .prepare_cached("UPDATE webhooks SET rate_next_us = $2 WHERE id = $1")
        .await
        .map_err(store_error)?;

    let mut visited = Vec::new();
    // At their cap (locally or across nodes): not "due" for this node now;
    // a completion, or the idle poll, brings them back.
    let mut capped = saturated.clone();
    let mut leased_rows = Vec::new();
    let mut uris = HashMap::new();
    let mut schedules = HashMap::new();
    for row in &endpoints {
        let remaining = request.limit.saturating_sub(leased_rows.len());
        if remaining == 0 {
            break;
        }
        let webhook: WebhookId = parsed(row, 0, "webhook id", WebhookId::parse)?;
        let uri = parsed(row, 1, "uri", |s| EndpointUri::parse(s).ok())?;
        let controls = super::webhooks::controls_from_row(row, 2)?;
        let state = ClaimState {
            now: request.now,
            room: room.get(&webhook).copied().unwrap_or(request.default_room),
            max_leased: request.max_leased_per_webhook,
            leased: u32::try_from(held.get(&webhook.to_string()).copied().unwrap_or(0)).unwrap_or(u32::MAX),
            rate_next_us: get(row, 6)?,
        };
        let limit = controls.claim_limit(state);
        let take = usize::try_from(limit.take).unwrap_or(0).min(remaining);
        visited.push(webhook.to_string());
        if limit.capped {
            capped.push(webhook.to_string());
        }
        if take == 0 {
            continue;
        }
        let rows = if controls.ordering == Ordering::Fifo {
            client
                .query(
                    &lease_head,
                    &[
                        &webhook.to_string(),
                        &now,
                        &token.0,
                        &node,
                        &request.lease_until.as_millis(),
                    ],
                )
                .await
        } else {
            client
                .query(
                    &lease,
                    &[
                        &webhook.to_string(),
                        &now,
                        &i64::try_from(take).unwrap_or(i64::MAX),
                        &token.0,
                        &node,
                        &request.lease_until.as_millis(),
                    ],
                )
                .await
        }
        .map_err(store_error)?;
        let taken = u32::try_from(rows.len()).unwrap_or(u32::MAX);
        if let Some(next_us) = controls.rate_after_claim(&state, taken) {
            client
                .execute(&set_rate, &[&webhook.to_string(), &next_us])
                .await
                .map_err(store_error)?;
        }
        if !rows.is_empty() {
            schedules.insert(webhook, controls.retry_schedule);
        }
        if !rows.is_empty() {
            uris.insert(webhook, uri);
        }
        for row in rows {
            leased_rows.push((webhook, row));
        }
    }

    // Leases that lapsed were someone's unreported attempts: log them.
    let mut lapsed_ids = Vec::new();
    let mut lapsed_numbers = Vec::new();
    let mut event_ids = HashSet::new();
    for (_, row) in &leased_rows {
        event_ids.insert(get::<String>(row, 1)?);
        if get::<bool>(row, 4)? {
            lapsed_ids.push(get::<String>(row, 0)?);
            lapsed_numbers.push(count(row, 3)?);
        }
    }
    if !lapsed_ids.is_empty() {
        let records: Vec<AttemptRecord> = lapsed_numbers
            .iter()
            .map(|n| AttemptRecord::lease_lapsed(*n, request.now))
            .collect();
        insert_attempts(client, &lapsed_ids, &records, false).await?;
    }
    // Only a hint raised past `now` can have been raised past a concurrent
    // publish's deliveries: those webhooks are rechecked after the commit.
    let mut raised = Vec::new();
    if !visited.is_empty() {
        let stmt = client
            .prepare_cached(&format!(
                "UPDATE webhooks w SET next_due_at = {}
                     WHERE w.id = ANY($1)
                     RETURNING w.id, w.next_due_at IS NULL OR w.next_due_at > $2",
                hints::EXACT_HINT
            ))
            .await
            .map_err(store_error)?;
        for row in client.query(&stmt, &[&visited, &now]).await.map_err(store_error)? {
            if get::<bool>(&row, 1)? {
                raised.push(get::<String>(&row, 0)?);
            }
        }
    }

    let payloads = load_payloads(client, event_ids.into_iter().collect()).await?;
    let secrets = signing_secrets(
        client,
        keyring,
        uris.keys().map(ToString::to_string).collect(),
        request.now,
    )
    .await?;
    let mut endpoints: HashMap<WebhookId, Arc<EndpointSnapshot>> = HashMap::new();
    for (webhook, uri) in uris {
        endpoints.insert(
            webhook,
            Arc::new(EndpointSnapshot {
                webhook_id: webhook,
                uri,
                secrets: secrets.get(&webhook).cloned().unwrap_or_default(),
                retry_schedule: schedules.remove(&webhook).flatten(),
            }),
        );
    }
    let mut jobs = Vec::with_capacity(leased_rows.len());
    for (webhook, row) in leased_rows {
        let event_id: EventId = parsed(&row, 1, "event id", EventId::parse)?;
        let payload = payloads
            .get(&event_id.to_string())
            .cloned()
            .ok_or_else(|| crate::store::StoreError::Corrupt(format!("event {event_id} has no payload")))?;
        jobs.push(DeliveryJob {
            delivery_id: parsed(&row, 0, "delivery id", DeliveryId::parse)?,
            lease: token,
            event_id,
            event_time: timestamp(&row, 2)?,
            attempt_number: count(&row, 3)? + 1,
            payload,
            endpoint: Arc::clone(&endpoints[&webhook]),
        });
    }

    let stmt = client
        .prepare_cached(
            "SELECT MIN(next_due_at) FROM webhooks
             WHERE next_due_at IS NOT NULL AND state = 'enabled' AND delete_time IS NULL AND NOT (id = ANY($1))",
        )
        .await
        .map_err(store_error)?;
    let next_due: Option<i64> = get(&client.query_one(&stmt, &[&capped]).await.map_err(store_error)?, 0)?;
    Ok((
        ClaimedBatch {
            jobs,
            next_due: next_due.map(Timestamp::from_millis),
        },
        raised,
    ))
}

/// Claims and completions commit without waiting for their WAL flush
/// (`synchronous_commit = off` for that transaction only). Publishes never
/// do. Failure policy: a server crash can lose the last few milliseconds
/// of claims and completions; a lost claim leaves its deliveries pending,
/// a lost completion leaves its delivery leased until its node is declared
/// dead or restarts; either way the delivery is attempted again
/// (at-least-once: a possible duplicate, never a loss), and the attempt is
/// logged as `interrupted`. In exchange the webhook row a claim locks is
/// held for a round trip, not an fsync.
pub(super) async fn asynchronous_commit(client: &impl GenericClient) -> StoreResult<()> {
    let stmt = client
        .prepare_cached("SET LOCAL synchronous_commit = off")
        .await
        .map_err(store_error)?;
    client.execute(&stmt, &[]).await.map_err(store_error)?;
    Ok(())
}

async fn load_payloads(client: &impl GenericClient, ids: Vec<String>) -> StoreResult<HashMap<String, Bytes>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client
        .prepare_cached("SELECT id, payload FROM events WHERE id = ANY($1)")
        .await
        .map_err(store_error)?;
    let rows = client.query(&stmt, &[&ids]).await.map_err(store_error)?;
    rows.iter()
        .map(|row| Ok((get::<String>(row, 0)?, Bytes::from(get::<Vec<u8>>(row, 1)?))))
        .collect()
}

/// Logs attempts; `replace` overwrites an `interrupted` placeholder of the
/// same number (a late completion knows better), else the first one stays.
async fn insert_attempts(
    client: &impl GenericClient,
    deliveries: &[String],
    records: &[AttemptRecord],
    replace: bool,
) -> StoreResult<()> {
    let numbers: Vec<i32> = records
        .iter()
        .map(|r| i32::try_from(r.number).unwrap_or(i32::MAX))
        .collect();
    let starts: Vec<i64> = records.iter().map(|r| r.start_time.as_millis()).collect();
    let durations: Vec<i64> = records
        .iter()
        .map(|r| i64::try_from(r.duration.as_millis()).unwrap_or(i64::MAX))
        .collect();
    let statuses: Vec<Option<i32>> = records.iter().map(|r| r.status_code.map(i32::from)).collect();
    let excerpts: Vec<Option<&str>> = records.iter().map(|r| r.response_excerpt.as_deref()).collect();
    let kinds: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.error_kind.map(AttemptErrorKind::as_str))
        .collect();
    let messages: Vec<Option<&str>> = records.iter().map(|r| r.error_message.as_deref()).collect();
    let on_conflict = if replace {
        "DO UPDATE SET start_time = excluded.start_time, duration_ms = excluded.duration_ms,
            status_code = excluded.status_code, response_excerpt = excluded.response_excerpt,
            error_kind = excluded.error_kind, error_message = excluded.error_message"
    } else {
        "DO NOTHING"
    };
    let sql = format!(
        "INSERT INTO attempts (delivery_id, attempt_number, start_time, duration_ms, status_code, response_excerpt,
                               error_kind, error_message)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::int8[], $4::int8[], $5::int4[], $6::text[], $7::text[], $8::text[])
         ON CONFLICT (delivery_id, attempt_number) {on_conflict}"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &deliveries,
                &numbers,
                &starts,
                &durations,
                &statuses,
                &excerpts,
                &kinds,
                &messages,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The hints a completion lowers after its commit: every webhook's, to its
/// retries' due time, and FIFO webhooks', to now, when their head finished.
#[derive(Default)]
pub(super) struct LoweredHints {
    pub(super) due: HashMap<WebhookId, i64>,
    pub(super) fifo_freed: HashMap<WebhookId, i64>,
}

/// Returns the results and the hints to lower after the commit. The
/// health consequences (a `410`'s disable included) are `health::apply`'s.
pub(super) async fn complete(
    client: &impl GenericClient,
    completions: &[Completion],
) -> StoreResult<(Vec<CompletionResult>, LoweredHints)> {
    // The attempt happened whatever became of the lease: always log it.
    let (logged, records): (Vec<String>, Vec<AttemptRecord>) = completions
        .iter()
        .filter_map(|c| c.attempt.clone().map(|a| (c.delivery_id.to_string(), a)))
        .unzip();
    if !logged.is_empty() {
        insert_attempts(client, &logged, &records, true).await?;
    }
    let mut ids = Vec::with_capacity(completions.len());
    let mut tokens = Vec::with_capacity(completions.len());
    let mut states = Vec::with_capacity(completions.len());
    let mut numbers: Vec<Option<i32>> = Vec::with_capacity(completions.len());
    let mut next_at: Vec<Option<i64>> = Vec::with_capacity(completions.len());
    let mut statuses: Vec<Option<i32>> = Vec::with_capacity(completions.len());
    let mut errors: Vec<Option<&str>> = Vec::with_capacity(completions.len());
    let mut finished: Vec<Option<i64>> = Vec::with_capacity(completions.len());
    for c in completions {
        let now = c.now.as_millis();
        let (state, next, finish) = match c.next {
            NextStep::Succeeded => ("succeeded", None, Some(now)),
            NextStep::RetryAt(at) => ("pending", Some(at.as_millis()), None),
            NextStep::Failed => ("failed", None, Some(now)),
        };
        ids.push(c.delivery_id.to_string());
        tokens.push(c.lease.0);
        states.push(state);
        numbers.push(c.attempt.as_ref().map(|a| i32::try_from(a.number).unwrap_or(i32::MAX)));
        next_at.push(next);
        statuses.push(c.attempt.as_ref().and_then(|a| a.status_code).map(i32::from));
        errors.push(c.last_error.as_deref());
        finished.push(finish);
    }
    let stmt = client
        .prepare_cached(
            "UPDATE deliveries d SET state = c.state, attempt_count = COALESCE(c.number, d.attempt_count),
                    next_attempt_at = c.next_at, lease_token = NULL, lease_node = NULL,
                    last_status = CASE WHEN c.number IS NULL THEN d.last_status ELSE c.status END,
                    last_error = c.error, finish_time = c.finished
             FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int4[], $5::int8[], $6::int4[], $7::text[], $8::int8[])
                  AS c(id, token, state, number, next_at, status, error, finished)
             WHERE d.id = c.id AND d.lease_token = c.token AND d.state = 'leased'
             RETURNING d.id",
        )
        .await
        .map_err(store_error)?;
    let applied: HashSet<String> = client
        .query(
            &stmt,
            &[
                &ids, &tokens, &states, &numbers, &next_at, &statuses, &errors, &finished,
            ],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| get::<String>(row, 0))
        .collect::<StoreResult<_>>()?;

    let mut hints = LoweredHints::default();
    let mut results = Vec::with_capacity(completions.len());
    for c in completions {
        if !applied.contains(&c.delivery_id.to_string()) {
            results.push(CompletionResult::Stale);
            continue;
        }
        let (map, at) = match c.next {
            NextStep::RetryAt(at) => (&mut hints.due, at.as_millis()),
            NextStep::Succeeded | NextStep::Failed => (&mut hints.fifo_freed, c.now.as_millis()),
        };
        map.entry(c.webhook_id).and_modify(|d| *d = (*d).min(at)).or_insert(at);
        results.push(CompletionResult::Applied);
    }
    Ok((results, hints))
}

/// Returns the hints to lower after the commit.
pub(super) async fn release(
    client: &impl GenericClient,
    releases: &[Release],
    now: Timestamp,
) -> StoreResult<HashMap<WebhookId, i64>> {
    if releases.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = releases.iter().map(|r| r.delivery_id.to_string()).collect();
    let tokens: Vec<i64> = releases.iter().map(|r| r.lease.0).collect();
    let started: Vec<bool> = releases.iter().map(|r| r.interrupted.is_some()).collect();
    let rows = client
        .query(
            "UPDATE deliveries d SET state = 'pending', next_attempt_at = $4, lease_token = NULL, lease_node = NULL,
                    attempt_count = d.attempt_count + CASE WHEN r.started THEN 1 ELSE 0 END,
                    last_error = CASE WHEN r.started THEN 'interrupted' ELSE d.last_error END
             FROM UNNEST($1::text[], $2::int8[], $3::bool[]) AS r(id, token, started)
             WHERE d.id = r.id AND d.lease_token = r.token AND d.state = 'leased'
             RETURNING d.id, d.webhook_id",
            &[&ids, &tokens, &started, &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let mut released = HashSet::new();
    let mut due = HashMap::new();
    for row in &rows {
        released.insert(get::<String>(row, 0)?);
        due.insert(parsed(row, 1, "webhook id", WebhookId::parse)?, now.as_millis());
    }
    let (logged, records): (Vec<String>, Vec<AttemptRecord>) = releases
        .iter()
        .filter(|r| released.contains(&r.delivery_id.to_string()))
        .filter_map(|r| r.interrupted.clone().map(|a| (r.delivery_id.to_string(), a)))
        .unzip();
    if !logged.is_empty() {
        insert_attempts(client, &logged, &records, false).await?;
    }
    Ok(due)
}

/// Ends every lease `node` holds: each attempt is logged `interrupted` and
/// the delivery is due at `now`. For a node that died or restarted.
pub(super) async fn end_node_leases(client: &impl GenericClient, node: &str, now: Timestamp) -> StoreResult<u64> {
    super::batches::end_node_leases(client, node).await?;
    let rows = client
        .query(
            "UPDATE deliveries SET state = 'pending', attempt_count = attempt_count + 1, next_attempt_at = $2,
                    lease_token = NULL, lease_node = NULL, last_error = 'interrupted'
             WHERE lease_node = $1 AND state = 'leased'
             RETURNING id, attempt_count, webhook_id",
            &[&node, &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut records = Vec::with_capacity(rows.len());
    let mut due = HashMap::new();
    for row in &rows {
        ids.push(get::<String>(row, 0)?);
        records.push(AttemptRecord::lease_lapsed(count(row, 1)?, now));
        due.insert(parsed(row, 2, "webhook id", WebhookId::parse)?, now.as_millis());
    }
    if !ids.is_empty() {
        insert_attempts(client, &ids, &records, false).await?;
        // Rare (failover, restart): lowered in the transaction; a race
        // with a claim is fixed by the repair sweep.
        hints::lower(client, &due).await.map_err(store_error)?;
        client
            .execute("SELECT pg_notify('herald_work', '')", &[])
            .await
            .map_err(store_error)?;
    }
    Ok(rows.len() as u64)
}

pub(super) async fn stats(client: &impl GenericClient, now: Timestamp) -> StoreResult<QueueStats> {
    let row = client
        .query_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempt_count > 0), COUNT(*) FILTER (WHERE state = 'leased')
             FROM deliveries WHERE next_attempt_at IS NOT NULL",
            &[],
        )
        .await
        .map_err(store_error)?;
    // Held deliveries (webhook disabled) are not "due": they wait on a person.
    let oldest = client
        .query_one(
            "SELECT MIN((SELECT d.next_attempt_at FROM deliveries d
                         WHERE d.webhook_id = w.id AND d.next_attempt_at <= $1 AND d.state = 'pending'
                         ORDER BY d.next_attempt_at LIMIT 1))
             FROM webhooks w WHERE w.state = 'enabled' AND w.delete_time IS NULL",
            &[&now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(QueueStats {
        pending: to_u64(get(&row, 0)?),
        retrying: to_u64(get(&row, 1)?),
        in_flight: to_u64(get(&row, 2)?),
        oldest_due: get::<Option<i64>>(&oldest, 0)?.map(Timestamp::from_millis),
    })
}

pub(super) fn attempt_from_row(row: &tokio_postgres::Row) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        number: count(row, 0)?,
        start_time: timestamp(row, 1)?,
        duration: Duration::from_millis(u64::try_from(get::<i64>(row, 2)?).unwrap_or(0)),
        status_code: get::<Option<i32>>(row, 3)?.and_then(|s| u16::try_from(s).ok()),
        response_excerpt: get(row, 4)?,
        error_kind: parsed_opt(row, 5, "attempt error kind", AttemptErrorKind::parse)?,
        error_message: get(row, 6)?,
    })
}
