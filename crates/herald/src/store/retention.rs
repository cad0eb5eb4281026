//! Retention: pruning events (payloads), their deliveries and their
//! attempts once everything about them is old. The rule, the same on
//! every backend: an event is pruned when its timestamp is before
//! `before` and every delivery of it has finished before `before`. An
//! event with a pending or leased delivery (a held delivery of a disabled
//! webhook, a replayed copy) is never pruned, however old.
//!
//! Pruning walks events oldest first, in steps that examine a bounded
//! number of them; the caller carries the cursor between steps, so events
//! that must stay are looked at once per pass, not once per step.

use async_trait::async_trait;

use super::StoreResult;
use crate::domain::{EventId, Timestamp};

#[derive(Debug, Clone, Copy)]
pub struct PruneRequest {
    pub before: Timestamp,
    /// The last event examined by the previous step of this pass.
    pub after: Option<(Timestamp, EventId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneStep {
    /// Events deleted (with their deliveries and attempts).
    pub deleted: u64,
    /// Where the next step starts; `None` when the pass is over.
    pub next: Option<(Timestamp, EventId)>,
}

/// Events one step examines at most.
pub const PRUNE_EVENTS_PER_STEP: usize = 200;

#[async_trait]
pub trait RetentionStore: Send + Sync {
    async fn prune_events(&self, request: PruneRequest) -> StoreResult<PruneStep>;
}
