//! Long-running operations in storage: the [`OperationStore`] sub-trait,
//! its value types and the snapshot codec both backends share.
//!
//! Semantics every backend keeps:
//!
//! - A transition loads the operation's status inside a write
//!   transaction, asks [`crate::domain::operation::apply`] (the one state
//!   machine), persists the answer, and publishes the event it names **in
//!   the same transaction** (the normal fan-out to the project's
//!   subscribed webhooks). The change and its event commit together or not
//!   at all.
//! - A transition sent with an `Idempotency-Key` is answered, when sent
//!   again with the same request, with the operation as the first answer
//!   left it (`Replayed`), without applying anything; with another request
//!   it is a conflict. Refused transitions record nothing.
//! - After every committed change the store wakes the operation's waiters
//!   ([`OperationWaiters`]) on this node and, on a shared database, on
//!   every node.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Page, PageRequest, Progress, StoreError, StoreResult};
use crate::domain::operation::{Command, Operation, OperationKind, OperationState, OperationStatus, Refusal};
use crate::domain::{EndpointUri, OperationId, ProjectId, Timestamp};

pub use super::waiters::{OperationWaiters, WaitGuard};

/// Listing filters; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct OperationFilter {
    pub state: Option<OperationState>,
    pub kind: Option<OperationKind>,
}

/// An `Idempotency-Key` on a transition: the request's hash (verb and
/// body) tells a repeat from a different request.
#[derive(Debug, Clone)]
pub struct TransitionKey {
    pub key: String,
    pub request_hash: [u8; 32],
}

#[derive(Debug, Clone)]
pub struct TransitionRequest {
    pub project_id: ProjectId,
    pub id: OperationId,
    pub command: Command,
    pub now: Timestamp,
    pub idempotency: Option<TransitionKey>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransitionOutcome {
    /// Committed (with its event, if it made one).
    Applied(Operation),
    /// The same request was applied before: the operation as it left it.
    Replayed(Operation),
    /// The state machine refused; nothing was written.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOperationOutcome {
    Deleted,
    NotFound,
    /// Only a done operation may be deleted.
    NotDone(OperationState),
}

#[async_trait]
pub trait OperationStore: Send + Sync {
    /// Stores the operation and, in the same transaction, attaches a
    /// hidden per-job webhook row for each of `uris` (signed as the
    /// operation's `job_webhooks.format` says): the project's existing
    /// enabled row for that URI and format, or a new one. Returns the
    /// operation as stored, its `job_webhooks.webhook_ids` filled in.
    async fn create_operation(&self, operation: Operation, uris: Vec<EndpointUri>) -> StoreResult<Operation>;
    async fn get_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<Option<Operation>>;
    /// Ordered by id (creation order), one page at a time.
    async fn list_operations(
        &self,
        project: ProjectId,
        filter: OperationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Operation>>;
    /// Fails with [`StoreError::NotFound`] if the operation does not exist
    /// (in that project); [`StoreError::IdempotencyConflict`] if the key
    /// was used for another request.
    async fn transition_operation(&self, request: TransitionRequest) -> StoreResult<TransitionOutcome>;
    async fn delete_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<DeleteOperationOutcome>;
    /// Housekeeping: applies [`Command::Sweep`] at `now` to a bounded
    /// number of operations whose expiry or worker lease has passed
    /// (expiring them or reporting them stalled, with their events).
    async fn sweep_operations(&self, now: Timestamp) -> StoreResult<Progress>;
    /// This node's registry of `:wait` long-polls.
    fn operation_waiters(&self) -> Arc<OperationWaiters>;
}

/// Operations one sweep call handles at most.
pub(crate) const SWEEP_CHUNK: usize = 256;

/// The idempotency record's key: namespaced by operation and verb, so a
/// transition's keys never meet a publish's.
pub(crate) fn namespaced_key(id: OperationId, command: &Command, key: &str) -> String {
    format!("operations/{id}:{}/{key}", command.verb())
}

/// The status document as stored.
pub(crate) fn encode_status(status: &OperationStatus) -> StoreResult<String> {
    serde_json::to_string(status).map_err(|e| StoreError::Corrupt(format!("encoding an operation: {e}")))
}

pub(crate) fn decode_status(text: &str) -> StoreResult<OperationStatus> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("invalid stored operation status: {e}")))
}

/// What an idempotent transition stores to answer a repeat: the whole
/// operation as the first answer showed it.
pub(crate) fn encode_snapshot(operation: &Operation) -> StoreResult<Vec<u8>> {
    let snapshot = serde_json::json!({
        "kind": operation.kind.as_str(),
        "create_time": operation.create_time.as_millis(),
        "status": operation.status,
    });
    serde_json::to_vec(&snapshot).map_err(|e| StoreError::Corrupt(format!("encoding an operation: {e}")))
}

pub(crate) fn decode_snapshot(project_id: ProjectId, id: OperationId, bytes: &[u8]) -> StoreResult<Operation> {
    #[derive(serde::Deserialize)]
    struct Snapshot {
        kind: String,
        create_time: i64,
        status: OperationStatus,
    }
    let snapshot: Snapshot = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("invalid stored transition answer: {e}")))?;
    Ok(Operation {
        id,
        project_id,
        kind: OperationKind::parse(&snapshot.kind).map_err(|e| StoreError::Corrupt(e.message))?,
        create_time: Timestamp::from_millis(snapshot.create_time),
        status: snapshot.status,
    })
}
