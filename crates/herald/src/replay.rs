//! The replay runner: advances running replays (`store::ReplayStore`) one
//! chunk at a time until none is left, then waits. Every chunk is its own
//! short transaction, and on a single-writer store the runner pauses
//! between chunks as long as the last one took, so a replay of a million
//! deliveries never stalls publishing (see `pause_after`). Progress lives in the
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

/// Advances every running replay until none is left, as fast as the store
/// allows (tests step with this); returns how many copies were queued.
pub async fn run_once(store: &dyn Store, clock: &SharedClock) -> StoreResult<u64> {
    drain(store, clock, false).await
}

/// Advances every running replay until none is left at the production
/// pace (see [`run`]); returns how many copies were queued.
pub async fn run_paced(store: &dyn Store, clock: &SharedClock) -> StoreResult<u64> {
    drain(store, clock, true).await
}

async fn drain(store: &dyn Store, clock: &SharedClock, paced: bool) -> StoreResult<u64> {
    let mut queued = 0;
    loop {
        let began = tokio::time::Instant::now();
        let progress = store.step_replays(clock.now()).await?;
        queued += progress.count();
        if progress.is_done() {
            return Ok(queued);
        }
        if paced {
            tokio::time::sleep(pause_after(store, began.elapsed())).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// Pacing: a store with one writer (SQLite) is shared with publishes and
/// claims, so after each step the runner leaves it free for as long as the
/// step took (at most `MAX_PAUSE`): a replay uses at most about half the
/// writer's time. A shared store (PostgreSQL) runs steps beside other
/// transactions, so there the runner only yields.
fn pause_after(store: &dyn Store, step: Duration) -> Duration {
    if store.is_shared() {
        Duration::ZERO
    } else {
        step.min(MAX_PAUSE)
    }
}

/// The longest pause between two steps.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Runs until `stop`.
pub async fn run(store: Arc<dyn Store>, clock: SharedClock, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let pause = match drain(store.as_ref(), &clock, true).await {
            Ok(_) => IDLE_POLL,
            Err(error) => {
                tracing::warn!(%error, "advancing a replay failed; retrying in 1s");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
