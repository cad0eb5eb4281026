//! Per-webhook statistics as stored: per-minute rollup rows maintained by
//! the completion transaction (no scan of the attempt log, ever), read
//! back by one primary-key range per webhook.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Completion, Progress, StoreResult};
use crate::domain::stats::{bucket_of, minute_of};
use crate::domain::{AttemptErrorKind, ProjectId, Timestamp, WebhookId};

/// One rollup cell: attempts of one webhook in one minute with one
/// outcome (`success` or an error kind) and latency bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatsKey {
    pub webhook_id: WebhookId,
    pub minute: i64,
    pub outcome: &'static str,
    pub bucket: u32,
}

/// What a batch of completions adds to the rollup, keys sorted (so that
/// concurrent writers lock rows in the same order).
pub fn rollup(completions: &[Completion]) -> Vec<(StatsKey, u64)> {
    let mut cells: BTreeMap<StatsKey, u64> = BTreeMap::new();
    for completion in completions {
        let Some(attempt) = &completion.attempt else { continue };
        let key = StatsKey {
            webhook_id: completion.webhook_id,
            minute: minute_of(attempt.start_time),
            outcome: attempt.error_kind.map_or("success", AttemptErrorKind::as_str),
            bucket: bucket_of(attempt.duration),
        };
        *cells.entry(key).or_default() += 1;
    }
    cells.into_iter().collect()
}

/// A stored cell, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsCell {
    pub minute: i64,
    pub outcome: String,
    pub bucket: u32,
    pub count: u64,
}

#[async_trait]
pub trait StatsStore: Send + Sync {
    /// The webhook's cells from `since_minute` on; `None` if there is no
    /// such webhook in the project.
    async fn webhook_stats(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        since_minute: i64,
    ) -> StoreResult<Option<Vec<StatsCell>>>;
    /// Deletes a bounded number of cells older than `before`.
    async fn prune_stats(&self, before: Timestamp) -> StoreResult<Progress>;
}
