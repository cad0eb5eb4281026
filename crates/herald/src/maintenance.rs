//! Housekeeping that runs beside the server: forgetting idempotency keys
//! once their window has passed, and failing deliveries a deleted webhook
//! left unfinished (only after a crash in the middle of a delete), and
//! deleting signing secrets whose rotation overlap has ended.
//!
//! Policy: an `Idempotency-Key` protects a publish for 24 hours (the same
//! window as the retry schedule); after that the key may be used again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::store::{Store, StoreResult};

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How often housekeeping runs.
const INTERVAL: Duration = Duration::from_secs(600);

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

/// Runs housekeeping every ten minutes until `stop`.
pub async fn run(store: Arc<dyn Store>, clock: SharedClock, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => match run_once(store.as_ref(), &clock).await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "forgot expired idempotency keys"),
                Err(error) => tracing::warn!(%error, "housekeeping failed; will retry"),
            },
        }
    }
}
