//! Housekeeping that runs beside the server: forgetting idempotency keys
//! once their window has passed, failing deliveries a deleted webhook
//! left unfinished (only after a crash in the middle of a delete),
//! deleting signing secrets whose rotation overlap has ended, and
//! retention: pruning old events with their deliveries and attempts
//! (`store::retention`: never an event with unfinished work) and
//! statistics cells older than the stats window.
//!
//! Policy: an `Idempotency-Key` protects a publish for 24 hours (the same
//! window as the retry schedule); after that the key may be used again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::store::{PruneRequest, Store, StoreResult};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How often housekeeping runs.
const INTERVAL: Duration = Duration::from_secs(600);
/// Statistics cells are kept this long (the API's longest window is a day).
pub const STATS_KEPT: Duration = Duration::from_secs(2 * 24 * 3600);

/// One round of housekeeping; returns how many idempotency keys expired.
/// Each store call does a bounded piece and says whether more is left.
pub async fn run_once(store: &dyn Store, clock: &SharedClock) -> StoreResult<u64> {
    while !store.fail_orphaned_deliveries(clock.now()).await?.is_done() {}
    // Secrets that stopped signing (a rotation's overlap ended) are deleted.
    while !store.purge_expired_secrets(clock.now()).await?.is_done() {}
    let before = crate::domain::Timestamp::from_millis(
        clock.now().as_millis() - i64::try_from(IDEMPOTENCY_WINDOW.as_millis()).unwrap_or(i64::MAX),
    );
    let mut total = 0;
    loop {
        let progress = store.prune_idempotency_keys(before).await?;
        total += progress.count();
        if progress.is_done() {
            return Ok(total);
        }
    }
}

/// One retention pass: prunes events (with their deliveries and attempts)
/// whose event and deliveries all finished more than `retention` ago, and
/// statistics older than [`STATS_KEPT`]. Each store call is a bounded step;
/// the pass carries the cursor. Returns how many events were pruned.
pub async fn prune_retained(store: &dyn Store, clock: &SharedClock, retention: Duration) -> StoreResult<u64> {
    let now = clock.now();
    let before = Timestamp::from_millis(now.as_millis().saturating_sub(millis(retention)));
    let mut request = PruneRequest { before, after: None };
    let mut pruned = 0;
    loop {
        let step = store.prune_events(request).await?;
        pruned += step.deleted;
        match step.next {
            Some(after) => request.after = Some(after),
            None => break,
        }
        // Let publishes and claims through between steps.
        tokio::task::yield_now().await;
    }
    let stats_before = Timestamp::from_millis(now.as_millis().saturating_sub(millis(STATS_KEPT)));
    while !store.prune_stats(stats_before).await?.is_done() {}
    Ok(pruned)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Runs housekeeping every ten minutes until `stop`.
pub async fn run(store: Arc<dyn Store>, clock: SharedClock, retention: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {
                match run_once(store.as_ref(), &clock).await {
                    Ok(0) => {}
                    Ok(expired) => tracing::info!(expired, "forgot expired idempotency keys"),
                    Err(error) => tracing::warn!(%error, "housekeeping failed; will retry"),
                }
                match prune_retained(store.as_ref(), &clock, retention).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "pruned events past their retention"),
                    Err(error) => tracing::warn!(%error, "retention pruning failed; will retry"),
                }
            }
        }
    }
}
