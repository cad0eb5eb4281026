//! Replays: re-queueing one webhook's past deliveries as a durable
//! background task. A `replays` row holds the request and a cursor (the
//! last delivery id examined; the walk ends at the webhook's newest
//! delivery when the replay was created, so its own copies are never
//! walked); each step examines
//! one bounded chunk after the cursor, inserts a fresh pending copy (same
//! event, due now, its retry window starting now) of each delivery that
//! matches, and moves the cursor, all in one transaction. A restart
//! resumes after the cursor; a chunk is never queued twice.
//!
//! The rules every backend shares are here: which stored states a filter
//! re-queues, and when a replay is finished.

use async_trait::async_trait;

use super::{Page, PageRequest, Progress, StoreResult};
use crate::domain::{ProjectId, ReplayId, Timestamp, WebhookId};

/// Which finished deliveries a replay re-queues (unfinished ones are
/// already queued and are never copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFilter {
    Failed,
    /// Succeeded and failed.
    All,
}

impl ReplayFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failed" => Some(Self::Failed),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// Whether a delivery in this stored state is re-queued.
    pub fn matches(self, stored_state: &str) -> bool {
        match self {
            Self::Failed => stored_state == "failed",
            Self::All => stored_state == "failed" || stored_state == "succeeded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayState {
    Running,
    Succeeded,
    /// Stopped: its webhook was deleted.
    Failed,
}

impl ReplayState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Replay {
    pub id: ReplayId,
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    /// Deliveries created in `[since, until)`.
    pub since: Timestamp,
    pub until: Timestamp,
    pub filter: ReplayFilter,
    pub state: ReplayState,
    /// Deliveries looked at so far.
    pub examined: u64,
    /// Copies queued so far.
    pub requeued: u64,
    pub error: Option<String>,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
    pub finish_time: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewReplay {
    pub id: ReplayId,
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    pub since: Timestamp,
    /// Clamped by the store to `now`: deliveries created after the
    /// replay was asked for (its own copies among them) are never replayed.
    pub until: Timestamp,
    pub filter: ReplayFilter,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub enum CreatedReplay {
    Created(Replay),
    /// No such webhook in this project (or it was deleted).
    WebhookNotFound,
    /// A running replay of this webhook covers part of the same range.
    Overlaps(ReplayId),
}

/// Where a replay's walk starts: just below every delivery id generated
/// at or after `since` (minus a minute for clock adjustments). A delivery's
/// id (a ULID taken from the wall clock when its row is written) is never
/// older than its `create_time` (taken from the clock before), so no
/// delivery created in the range is below it.
pub fn start_cursor(since: Timestamp) -> String {
    let ms = u64::try_from(since.as_millis().saturating_sub(60_000)).unwrap_or(0);
    format!(
        "{}_{}",
        crate::domain::DeliveryId::PREFIX,
        ulid::Ulid::from_parts(ms, 0)
    )
}

/// Whether a delivery examined by a replay is copied.
pub fn wanted(
    replay_since: Timestamp,
    replay_until: Timestamp,
    filter: ReplayFilter,
    created: Timestamp,
    stored_state: &str,
) -> bool {
    created >= replay_since && created < replay_until && filter.matches(stored_state)
}

/// Deliveries one step examines at most, per backend: small on SQLite,
/// whose single writer publishes share.
pub const SQLITE_CHUNK: usize = 256;
pub const POSTGRES_CHUNK: usize = 1000;

/// Whether a step that examined `examined` rows (at most `chunk`) found
/// the end of the range.
pub fn finished(examined: usize, chunk: usize) -> bool {
    examined < chunk
}

#[async_trait]
pub trait ReplayStore: Send + Sync {
    async fn create_replay(&self, replay: NewReplay) -> StoreResult<CreatedReplay>;
    async fn get_replay(&self, project: ProjectId, id: ReplayId) -> StoreResult<Option<Replay>>;
    /// Newest first.
    async fn list_replays(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<Replay>>;
    /// Advances one running replay (the one least recently advanced) by
    /// one chunk. `Done` when no replay is left running; on a shared
    /// database a replay another node is advancing is skipped, never
    /// waited for or advanced twice.
    async fn step_replays(&self, now: Timestamp) -> StoreResult<Progress>;
}
