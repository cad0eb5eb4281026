//! The scheduling hint (`webhooks.next_due_at`) on a shared database.
//!
//! The hint is a lower bound of a webhook's earliest unfinished delivery.
//! A claim recomputes it from its own snapshot, which cannot see a
//! concurrent publish's uncommitted deliveries, and may raise it past them.
//! Rather than making every publish lock the webhook row until its commit
//! (which serialised publishes and claims on a hot webhook), both sides
//! fix the hint *after* they commit, each with a fresh snapshot:
//!
//! - a publish (or a completion scheduling a retry, or a release) lowers
//!   the hints of its webhooks after its commit: if a claim already raised
//!   one, this sees it and lowers it back;
//! - a claim, after its commit, lowers each visited webhook's hint to the
//!   earliest unfinished delivery now visible: if a publish committed after
//!   the claim's snapshot, this sees its deliveries.
//!
//! Whichever of the two commits last, the later check sees the other's
//! commit, so no update is lost. These statements run on a small pool of
//! their own whose sessions commit asynchronously: a hint is not data, and
//! [`repair`] (at node start and every `REPAIR_EVERY` heartbeats) recomputes
//! any hint a crash between a commit and its check left too high.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Pool};

use super::connect::{pool_error, store_error};
use crate::domain::WebhookId;
use crate::store::StoreResult;

/// The exact hint of the webhook row aliased `w` (per-endpoint controls
/// included): its earliest unfinished delivery's due time (a FIFO
/// webhook's: its head's, the oldest by event time, since nothing behind
/// the head may go first), never earlier than the rate limiter admits the
/// next send. `NULL` when nothing is unfinished.
pub(super) const EXACT_HINT: &str = "CASE WHEN w.ordering = 'fifo' THEN
        (SELECT GREATEST(d.next_attempt_at, (w.rate_next_us + 999) / 1000) FROM deliveries d
         WHERE d.webhook_id = w.id AND d.next_attempt_at IS NOT NULL ORDER BY d.event_time, d.id LIMIT 1)
    ELSE
        (SELECT GREATEST(d.next_attempt_at, (w.rate_next_us + 999) / 1000) FROM deliveries d
         WHERE d.webhook_id = w.id AND d.next_attempt_at IS NOT NULL ORDER BY d.next_attempt_at LIMIT 1)
    END";

/// Heartbeats between two repair sweeps.
pub(super) const REPAIR_EVERY: u64 = 30;

/// Makes each webhook's hint no later than its instant (but never below
/// what its rate limiter admits). Only rows whose
/// hint must move are locked, in id order, so concurrent callers never
/// deadlock; the comparison uses the locked (newest) row version.
pub(super) async fn lower(
    client: &impl GenericClient,
    due: &HashMap<WebhookId, i64>,
) -> Result<(), tokio_postgres::Error> {
    lower_where(client, due, false).await
}

/// [`lower`], for FIFO webhooks only (after a completion freed the head:
/// the next one may go now, although the hint still says the head's lease).
pub(super) async fn lower_fifo(
    client: &impl GenericClient,
    due: &HashMap<WebhookId, i64>,
) -> Result<(), tokio_postgres::Error> {
    lower_where(client, due, true).await
}

async fn lower_where(
    client: &impl GenericClient,
    due: &HashMap<WebhookId, i64>,
    fifo_only: bool,
) -> Result<(), tokio_postgres::Error> {
    if due.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<(String, i64)> = due.iter().map(|(w, at)| (w.to_string(), *at)).collect();
    pairs.sort();
    let (ids, ats): (Vec<String>, Vec<i64>) = pairs.into_iter().unzip();
    let stmt = client
        .prepare_cached(
            "WITH wanted AS (SELECT * FROM UNNEST($1::text[], $2::int8[]) AS u(id, at)),
                  locked AS (
                    SELECT w.id, GREATEST(wanted.at, (w.rate_next_us + 999) / 1000) AS at, w.next_due_at AS current
                    FROM webhooks w JOIN wanted ON wanted.id = w.id
                    WHERE w.state = 'enabled' AND w.delete_time IS NULL AND (NOT $3 OR w.ordering = 'fifo')
                      AND (w.next_due_at IS NULL OR w.next_due_at > GREATEST(wanted.at, (w.rate_next_us + 999) / 1000))
                    ORDER BY w.id FOR NO KEY UPDATE OF w)
             UPDATE webhooks w SET next_due_at = GREATEST(LEAST(COALESCE(w.next_due_at, locked.at), locked.at),
                                                          (w.rate_next_us + 999) / 1000)
             FROM locked WHERE w.id = locked.id AND (locked.current IS NULL OR locked.current > locked.at)",
        )
        .await?;
    client.execute(&stmt, &[&ids, &ats, &fifo_only]).await?;
    Ok(())
}

/// After a claim: lowers each webhook's hint to its exact value as now
/// visible.
pub(super) async fn recheck(client: &impl GenericClient, webhooks: &[String]) -> Result<(), tokio_postgres::Error> {
    if webhooks.is_empty() {
        return Ok(());
    }
    let stmt = client
        .prepare_cached(&format!(
            "SELECT w.id, {EXACT_HINT} FROM webhooks w WHERE w.id = ANY($1)"
        ))
        .await?;
    let mut due = HashMap::new();
    for row in client.query(&stmt, &[&webhooks]).await? {
        let (id, at): (&str, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        if let (Some(id), Some(at)) = (WebhookId::parse(id), at) {
            due.insert(id, at);
        }
    }
    lower(client, &due).await
}

/// Runs `lower` on the hint pool after a commit. Failure policy: logged;
/// the next repair sweep fixes a hint left too high.
pub(super) async fn lower_after_commit(pool: &Pool, due: &HashMap<WebhookId, i64>) {
    if due.is_empty() {
        return;
    }
    let result = match pool.get().await {
        Ok(client) => lower(&client, due).await.map_err(store_error),
        Err(error) => Err(pool_error(error)),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not update scheduling hints; the next repair sweep will");
    }
}

/// Runs `lower_fifo` on the hint pool after a completion's commit (same policy).
pub(super) async fn lower_fifo_after_commit(pool: &Pool, due: &HashMap<WebhookId, i64>) {
    if due.is_empty() {
        return;
    }
    let result = match pool.get().await {
        Ok(client) => lower_fifo(&client, due).await.map_err(store_error),
        Err(error) => Err(pool_error(error)),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not update FIFO scheduling hints; the next repair sweep will");
    }
}

/// After a publish's commit: lowers its webhooks' hints, then asks the
/// [`Waker`] to wake every node. Failure policy: logged; a hint left high
/// is fixed by the repair sweep.
pub(super) async fn after_publish(pool: &Pool, waker: &Waker, due: &HashMap<WebhookId, i64>) {
    if due.is_empty() {
        return;
    }
    lower_after_commit(pool, due).await;
    waker.wake();
}

/// Sends `NOTIFY herald_work` for commits, coalesced: a request arriving
/// while a notification is being sent, or within `WAKE_COALESCE` after it,
/// is answered by one more notification right after. Every commit is thus
/// followed by a notification within a few milliseconds, at most one per
/// `WAKE_COALESCE` per node (each notifying transaction takes a
/// cluster-wide lock at commit).
#[derive(Clone)]
pub(super) struct Waker {
    requested: std::sync::Arc<tokio::sync::Notify>,
}

const WAKE_COALESCE: std::time::Duration = std::time::Duration::from_millis(2);

impl Waker {
    pub(super) fn spawn(pool: Pool, stop: tokio_util::sync::CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let requested = std::sync::Arc::new(tokio::sync::Notify::new());
        let waiting = std::sync::Arc::clone(&requested);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = waiting.notified() => {}
                }
                let sent = match pool.get().await {
                    Ok(client) => client
                        .execute("SELECT pg_notify('herald_work', '')", &[])
                        .await
                        .map(drop)
                        .map_err(store_error),
                    Err(error) => Err(pool_error(error)),
                };
                if let Err(error) = sent {
                    tracing::debug!(%error, "could not wake other nodes; their idle poll will");
                }
                tokio::time::sleep(WAKE_COALESCE).await;
            }
        });
        (Self { requested }, task)
    }

    pub(super) fn wake(&self) {
        self.requested.notify_one();
    }
}

/// Runs `recheck` on the hint pool after a claim's commit (same policy).
pub(super) async fn recheck_after_commit(pool: &Pool, webhooks: &[String]) {
    if webhooks.is_empty() {
        return;
    }
    let result = match pool.get().await {
        Ok(client) => recheck(&client, webhooks).await.map_err(store_error),
        Err(error) => Err(pool_error(error)),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "could not recheck scheduling hints; the next repair sweep will");
    }
}

/// Lowers every enabled webhook's hint that is later than its exact value
/// (one index probe per webhook).
pub(super) async fn repair(pool: &Pool) -> StoreResult<u64> {
    let client = pool.get().await.map_err(pool_error)?;
    client
        .execute(
            &format!(
                "UPDATE webhooks t SET next_due_at = d.earliest
                 FROM (SELECT w.id, {EXACT_HINT} AS earliest
                       FROM webhooks w WHERE w.state = 'enabled' AND w.delete_time IS NULL) d
                 WHERE t.id = d.id AND d.earliest IS NOT NULL AND (t.next_due_at IS NULL OR t.next_due_at > d.earliest)"
            ),
            &[],
        )
        .await
        .map_err(store_error)
}
