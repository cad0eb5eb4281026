//! The replay runner: advances running replays (`store::ReplayStore`) one
//! chunk at a time until none is left, then waits. Every chunk is its own
//! short transaction and the runner yields between chunks, so a replay of
//! a million deliveries never stalls publishing. Progress lives in the
//! database: after a restart (or on another node) the runner finds the
//! running replays and resumes each after its cursor.
//!
//! Failure policy: a failed step is logged and retried after a pause; a
//! step that failed committed nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::store::{Store, StoreResult};

/// How often an idle runner looks for new replays (a replay starts within
/// this long of its request).
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Advances every running replay until none is left (tests step with this);
/// returns how many copies were queued.
pub async fn run_once(store: &dyn Store, clock: &SharedClock) -> StoreResult<u64> {
    let mut queued = 0;
    loop {
        let progress = store.step_replays(clock.now()).await?;
        queued += progress.count();
        if progress.is_done() {
            return Ok(queued);
        }
    }
}

/// Runs until `stop`.
pub async fn run(store: Arc<dyn Store>, clock: SharedClock, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let pause = match store.step_replays(clock.now()).await {
            // Let publishes and claims through between chunks.
            Ok(progress) if !progress.is_done() => Duration::ZERO,
            Ok(_) => IDLE_POLL,
            Err(error) => {
                tracing::warn!(%error, "advancing a replay failed; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
