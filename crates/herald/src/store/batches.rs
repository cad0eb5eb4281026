//! Storage of files (chunked) and batches (their rows and their requests'
//! leased work).
//!
//! Files are rows of at most [`FILE_CHUNK_BYTES`] each, written as they
//! stream in and read one at a time as they stream out, so no file is ever
//! whole in memory and every node sees every file. A file is visible once
//! [`BatchStore::finish_file`] committed.
//!
//! A batch's requests are leased work, with the delivery queue's design:
//! a claim commits leases under a fresh token before any request is sent;
//! a result is written later, fenced by that token (a late worker whose
//! lease lapsed gets `Stale`); an abandoned lease is simply due again.
//! Status changes and the event announcing them commit together.

use async_trait::async_trait;
use bytes::Bytes;

use super::{LeaseToken, StoreResult};
use crate::domain::batch::{Batch, BatchError, BatchStatus};
use crate::domain::{BatchId, FileId, ProjectId, Timestamp};

/// Bytes per stored file chunk.
pub const FILE_CHUNK_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub project_id: ProjectId,
    pub purpose: String,
    pub filename: String,
    pub bytes: u64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: FileId,
    pub project_id: ProjectId,
    pub purpose: String,
    pub filename: String,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: BatchId,
    pub project_id: ProjectId,
    pub input_file_id: FileId,
    pub endpoint: String,
    pub completion_window: std::time::Duration,
    pub metadata: String,
    pub now: Timestamp,
    /// `webhook_config`, its `job.webhook_ids` empty: the store attaches
    /// one hidden row per URI of `webhook_uris` in the create's
    /// transaction and fills them in.
    pub webhooks: Option<crate::domain::batch::BatchWebhooks>,
    pub webhook_uris: Vec<crate::domain::EndpointUri>,
}

/// One page of a newest-first listing.
#[derive(Debug, Clone)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// Now `cancelling` (or already was).
    Cancelling(Box<Batch>),
    /// Already finished: cannot be cancelled.
    Finished(BatchStatus),
}

/// A request, validated, as the validator stores it.
#[derive(Debug, Clone)]
pub struct NewBatchRequest {
    /// 1-based input line: the output order.
    pub line: u64,
    pub custom_id: String,
    pub upstream: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// The first line whose `custom_id` an earlier line already used.
    Duplicate {
        line: u64,
        custom_id: String,
    },
    /// The validation lease was lost (another worker took the batch over).
    Stale,
}

/// How validation ended.
#[derive(Debug, Clone)]
pub enum Validated {
    Valid { total: u64 },
    Invalid(Vec<BatchError>),
}

/// A batch leased for validation.
#[derive(Debug, Clone)]
pub struct ValidationLease {
    pub batch: Batch,
    pub token: LeaseToken,
}

#[derive(Debug, Clone)]
pub struct RequestClaim {
    pub now: Timestamp,
    pub lease_until: Timestamp,
    /// Requests to lease at most, per upstream name.
    pub room: Vec<(String, usize)>,
    /// Requests to lease at most, in all.
    pub limit: usize,
    /// Requests to take from one batch per claim (fairness).
    pub per_batch: usize,
    /// Batches visited per claim, least recently served first.
    pub max_batches: usize,
}

/// A leased request.
#[derive(Debug, Clone)]
pub struct RequestJob {
    pub batch_id: BatchId,
    pub line: u64,
    pub custom_id: String,
    pub upstream: String,
    pub endpoint: String,
    pub body: Bytes,
    /// Tries made before this one.
    pub attempts: u32,
    pub token: LeaseToken,
}

#[derive(Debug, Clone)]
pub enum RequestUpdate {
    /// Finished: the output or error line.
    Done { line_bytes: Vec<u8>, failed: bool },
    /// Try again at `at`.
    Retry { at: Timestamp },
}

#[derive(Debug, Clone)]
pub struct RequestCompletion {
    pub batch_id: BatchId,
    pub line: u64,
    pub token: LeaseToken,
    pub update: RequestUpdate,
}

/// What a batch that no longer runs requests becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Completed,
    Cancelled,
    Expired,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Completed, Self::Cancelled, Self::Expired]
            .into_iter()
            .find(|finish| finish.as_str() == text)
    }

    /// Whether (and how) an active batch ends now, the one rule both
    /// backends apply: a cancelled batch once nothing is in flight; a
    /// running one at its deadline, or once every request is done.
    pub fn decide(status: BatchStatus, expired: bool, unfinished: bool, in_flight: bool) -> Option<Self> {
        match status {
            BatchStatus::Cancelling if !in_flight => Some(Self::Cancelled),
            BatchStatus::InProgress if expired => Some(Self::Expired),
            BatchStatus::InProgress if !unfinished => Some(Self::Completed),
            _ => None,
        }
    }

    pub fn status(self) -> BatchStatus {
        match self {
            Self::Completed => BatchStatus::Completed,
            Self::Cancelled => BatchStatus::Cancelled,
            Self::Expired => BatchStatus::Expired,
        }
    }
}

/// One step of finishing a batch.
#[derive(Debug, Clone)]
pub enum FinishStep {
    /// A piece was written; call again.
    More,
    /// The batch has its final status (and its event was published).
    Finished(Box<Batch>),
}

/// Rows read per finishing piece at most.
pub const FINISH_ROWS: usize = 1000;

/// One request row as finishing reads it.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub line: u64,
    pub custom_id: String,
    pub done: bool,
    pub result: Vec<u8>,
    pub failed: bool,
}

/// A piece of a batch's result files, built the same way by every
/// backend: rows in line order until either file's piece reaches a chunk
/// (so each piece is at most one chunk per file, plus one line).
#[derive(Debug, Default)]
pub struct Piece {
    pub output: Vec<u8>,
    pub errors: Vec<u8>,
    /// The last line this piece covers.
    pub last_line: Option<u64>,
    /// Whether it reached the batch's last row.
    pub end: bool,
}

impl Piece {
    /// Builds a piece from up to [`FINISH_ROWS`] rows after the cursor.
    pub fn build(finish: Finish, rows: Vec<ResultRow>) -> Self {
        let mut piece = Self {
            end: rows.len() < FINISH_ROWS,
            ..Self::default()
        };
        let total = rows.len();
        for (index, row) in rows.into_iter().enumerate() {
            if row.done {
                if row.failed {
                    piece.errors.extend_from_slice(&row.result);
                } else {
                    piece.output.extend_from_slice(&row.result);
                }
            } else if finish == Finish::Expired {
                piece
                    .errors
                    .extend_from_slice(&crate::domain::batch::expired_line(&row.custom_id));
            }
            piece.last_line = Some(row.line);
            let full = piece.output.len() >= FILE_CHUNK_BYTES || piece.errors.len() >= FILE_CHUNK_BYTES;
            if full && index + 1 < total {
                piece.end = false;
                break;
            }
        }
        piece
    }
}

#[async_trait]
pub trait BatchStore: Send + Sync {
    /// Starts an upload (invisible until finished).
    async fn begin_file(&self, file: NewFile) -> StoreResult<()>;
    async fn append_file_chunk(&self, id: FileId, seq: u32, data: Bytes) -> StoreResult<()>;
    /// Makes the upload visible with its size.
    async fn finish_file(&self, id: FileId, bytes: u64) -> StoreResult<FileRecord>;
    /// Forgets an unfinished (or any) file and its chunks.
    async fn discard_file(&self, id: FileId) -> StoreResult<()>;
    /// Newest first; `after` is the last id of the previous page.
    async fn list_files(
        &self,
        project: ProjectId,
        after: Option<FileId>,
        limit: u32,
    ) -> StoreResult<ListPage<FileRecord>>;
    async fn get_file(&self, project: ProjectId, id: FileId) -> StoreResult<Option<FileRecord>>;
    /// Chunk `seq` (from 0) of a file, `None` past its end.
    async fn file_chunk(&self, id: FileId, seq: u32) -> StoreResult<Option<Bytes>>;
    async fn delete_file(&self, project: ProjectId, id: FileId) -> StoreResult<bool>;

    /// Creates a `validating` batch. Fails with `NotFound` if the input
    /// file is not the project's.
    async fn create_batch(&self, batch: NewBatch) -> StoreResult<Batch>;
    async fn get_batch(&self, project: ProjectId, id: BatchId) -> StoreResult<Option<Batch>>;
    async fn list_batches(
        &self,
        project: ProjectId,
        after: Option<BatchId>,
        limit: u32,
    ) -> StoreResult<ListPage<Batch>>;
    /// `validating`/`in_progress` become `cancelling` (no new request is
    /// claimed from then on); the runner ends it once nothing is in flight.
    async fn cancel_batch(&self, project: ProjectId, id: BatchId, now: Timestamp)
    -> StoreResult<Option<CancelOutcome>>;

    /// Leases one `validating` (or `cancelling` before validation ended)
    /// batch whose validation is not leased, dropping the requests a
    /// previous, interrupted validation stored.
    async fn claim_validation(&self, now: Timestamp, lease_until: Timestamp) -> StoreResult<Option<ValidationLease>>;
    async fn add_batch_requests(
        &self,
        batch: BatchId,
        token: LeaseToken,
        requests: Vec<NewBatchRequest>,
    ) -> StoreResult<AddOutcome>;
    /// Ends validation: `in_progress` (or `cancelled` if cancelled
    /// meanwhile) or `failed`, with its event. `false`: the lease was lost.
    async fn finish_validation(
        &self,
        batch: BatchId,
        token: LeaseToken,
        result: Validated,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Leases due requests of `in_progress` batches.
    async fn claim_requests(&self, claim: RequestClaim) -> StoreResult<Vec<RequestJob>>;
    /// Applies results, fenced by each lease's token; one `bool` per
    /// completion (`false`: stale, nothing changed).
    async fn complete_requests(&self, completions: Vec<RequestCompletion>) -> StoreResult<Vec<bool>>;
    /// Batches ready to end at `now` (every request done, cancelled with
    /// nothing in flight, or past `expires_at`), and batches whose ending
    /// is under way.
    async fn batches_to_finish(&self, now: Timestamp) -> StoreResult<Vec<(BatchId, Finish)>>;
    /// One bounded step of ending a batch, each its own transaction: the
    /// first picks the result files (and makes a completing batch
    /// `finalizing`); each writes the next piece of rows to the output and
    /// error files (input order) and drops those rows; the last makes the
    /// files visible, sets the final status and publishes its event. A
    /// crash between steps resumes at the cursor. `None` if the batch had
    /// already ended.
    async fn finish_batch(&self, id: BatchId, finish: Finish, now: Timestamp) -> StoreResult<Option<FinishStep>>;
    /// Publishes `batch.progress` for running batches whose finished count
    /// changed since their last one, at most once per `interval` each
    /// (the event and the batch's `sequence` in one transaction). Returns
    /// how many were published.
    async fn publish_progress(&self, now: Timestamp, interval: std::time::Duration) -> StoreResult<usize>;
    /// Deletes (a bounded number of) uploads that never finished and were
    /// begun before `before` (their client or node went away), with their
    /// chunks. Result files of a batch still finishing are kept.
    async fn prune_abandoned_uploads(&self, before: Timestamp) -> StoreResult<super::Progress>;
    /// Notified when batch work may be waiting (a batch created, cancelled
    /// or validated on this node); the runner's idle poll covers the rest.
    fn batch_notifier(&self) -> std::sync::Arc<tokio::sync::Notify>;
}
