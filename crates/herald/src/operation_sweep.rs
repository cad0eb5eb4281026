//! Operation housekeeping: expires operations past their `expire_time` and
//! reports (once) operations whose worker stopped heartbeating past its
//! lease, each with its event, in the same transaction. Runs every second
//! beside the dispatcher; each pass is one indexed range read of the
//! operations due (`due_at <= now`), so an idle system costs one cheap
//! query per second per node. On a shared database the nodes' sweeps skip
//! rows another node holds (`SKIP LOCKED`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::store::{Store, StoreResult};

/// How often the sweep runs: the precision of expiries and stall reports.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One pass at the clock's `now`; returns how many operations changed.
pub async fn run_once(store: &dyn Store, clock: &SharedClock) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let progress = store.sweep_operations(clock.now()).await?;
        total += progress.count();
        if progress.is_done() {
            return Ok(total);
        }
    }
}

/// Sweeps every [`INTERVAL`] until `stop`.
pub async fn run(store: Arc<dyn Store>, clock: SharedClock, stop: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => match run_once(store.as_ref(), &clock).await {
                Ok(0) => {}
                Ok(changed) => tracing::debug!(changed, "swept operations"),
                Err(error) => tracing::warn!(%error, "sweeping operations failed; will retry"),
            },
        }
    }
}
