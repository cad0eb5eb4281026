//! Storage: the single source of truth for projects, webhooks, events and the
//! delivery queue.
//!
//! The engine and the API talk to storage only through the traits below, so
//! a second backend (PostgreSQL, for many nodes on one database) slots in
//! without touching them. The traits promise backend-neutral semantics:
//!
//! - [`EventStore::publish`] commits the events, one delivery per matching
//!   enabled webhook, and the idempotency record in **one** transaction, and
//!   returns only once that transaction is durable.
//! - [`DeliveryQueue::claim`] leases due deliveries under a fresh token; a
//!   lease that expires makes its delivery claimable again (its unfinished
//!   attempt is logged as `interrupted`).
//! - [`DeliveryQueue::complete`] is fenced by that token: a worker whose lease
//!   was taken over records its attempt but cannot change the delivery.
//! - No method holds a transaction open across a call out of the store.

pub mod sqlite;
mod types;

use async_trait::async_trait;

use crate::domain::project::{ApiKey, Project};
use crate::domain::webhook::Webhook;
use crate::domain::{ApiKeyId, EventId, ProjectId, Timestamp, WebhookId};

pub use types::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A referenced row does not exist (or belongs to another project).
    #[error("not found")]
    NotFound,
    /// The idempotency key was used before with a different request body.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict,
    /// The database cannot be used right now (closed, disk full, I/O error).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data violates an invariant (a bug or outside tampering).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait ProjectStore: Send + Sync {
    async fn create_project(&self, project: Project) -> StoreResult<()>;
    async fn list_projects(&self, page: PageRequest) -> StoreResult<Page<Project>>;
    async fn get_project(&self, id: ProjectId) -> StoreResult<Option<Project>>;
    /// Fails with [`StoreError::NotFound`] if the project does not exist.
    async fn create_api_key(&self, key: ApiKey, key_hash: [u8; 32]) -> StoreResult<()>;
    /// Unrevoked keys, ordered by id, one page at a time.
    async fn list_api_keys(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<ApiKey>>;
    /// Returns whether an unrevoked key was revoked.
    async fn revoke_api_key(&self, project: ProjectId, id: ApiKeyId, now: Timestamp) -> StoreResult<bool>;
    /// The project an unrevoked key belongs to.
    async fn find_api_key(&self, key_hash: [u8; 32]) -> StoreResult<Option<(ApiKeyId, ProjectId)>>;
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_webhook(&self, webhook: NewWebhook) -> StoreResult<Webhook>;
    /// Listings and gets show the signing secrets that still sign at `now`.
    async fn list_webhooks(&self, project: ProjectId, page: PageRequest, now: Timestamp) -> StoreResult<Page<Webhook>>;
    async fn get_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<Option<Webhook>>;
    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> StoreResult<Option<Webhook>>;
    /// Deletes the webhook; its unfinished deliveries fail with reason
    /// `webhook_deleted` (in chunks that let other writes through). Returns
    /// whether it existed.
    async fn delete_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<bool>;
}

#[async_trait]
pub trait EventStore: Send + Sync {
    async fn publish(&self, request: PublishRequest) -> StoreResult<PublishOutcome>;
    async fn get_event(&self, project: ProjectId, id: EventId) -> StoreResult<Option<EventDetail>>;
    /// Forgets idempotency keys recorded before `before`; returns how many.
    async fn prune_idempotency_keys(&self, before: Timestamp) -> StoreResult<u64>;
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<ClaimedBatch>;
    /// Applies attempt outcomes; one result per completion, in order.
    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<CompletionResult>>;
    /// Returns unfinished leased deliveries to the queue, due at `now`
    /// (graceful shutdown). A release whose request had started logs an
    /// `interrupted` attempt; one that never started logs nothing.
    async fn release(&self, releases: Vec<Release>, now: Timestamp) -> StoreResult<()>;
    /// Ends every lease at once, logging their attempts as `interrupted`: for
    /// a backend owned by one process, called at start-up after a crash.
    async fn recover_all_leases(&self, now: Timestamp) -> StoreResult<u64>;
    async fn queue_stats(&self, now: Timestamp) -> StoreResult<QueueStats>;
    /// Fails a chunk of unfinished deliveries left behind by deleted
    /// webhooks (a crash in the middle of a delete); returns how many.
    async fn fail_orphaned_deliveries(&self, now: Timestamp) -> StoreResult<u64>;
    /// Notified when deliveries may have become due without a claim noticing:
    /// after a publish commits, after a webhook is re-enabled (and, for a
    /// shared database, when another node publishes).
    fn work_notifier(&self) -> std::sync::Arc<tokio::sync::Notify>;
}

/// Everything a running Herald needs from storage.
#[async_trait]
pub trait Store: ProjectStore + WebhookStore + EventStore + DeliveryQueue + Send + Sync + 'static {
    /// Checks that the database answers (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes and closes; later calls fail with `Unavailable`.
    async fn close(&self);
}
