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
//! - Rules that are the same for every backend (which webhooks an event fans
//!   out to, when a delivery's window has closed, what an interrupted
//!   attempt records, what a `410` does) are decided in `domain` or
//!   `delivery`; a backend persists the decision and never re-decides it.
//! - Work that may touch many rows (failing a deleted webhook's deliveries,
//!   pruning) is done in bounded pieces that answer [`Progress`]; the
//!   backend picks the piece size.
//!
//! [`open`] is the only place that chooses a backend; nothing above this
//! module names one.

pub mod batches;
mod codec;
pub mod controls;
mod delivery_log;
mod event_types;
pub mod health;
mod operations;
pub mod postgres;
mod replays;
mod retention;
mod sealing;
mod secrets;
mod signing_keys;
pub mod sqlite;
mod stats;
mod types;
mod waiters;

use async_trait::async_trait;

use crate::domain::project::{ApiKey, Project};
use crate::domain::webhook::Webhook;
use crate::domain::{ApiKeyId, EventId, ProjectId, Timestamp, WebhookId};

pub use batches::BatchStore;
pub use delivery_log::*;
pub use event_types::*;
pub use operations::*;
pub use replays::*;
pub use retention::*;
pub use secrets::*;
pub use signing_keys::*;
pub use stats::*;
pub use types::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A referenced row does not exist (or belongs to another project).
    #[error("not found")]
    NotFound,
    /// The idempotency key was used before with a different request body.
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict,
    /// The write would pass a configured limit (named in the message);
    /// nothing was written.
    #[error("{0}")]
    LimitExceeded(String),
    /// The database cannot be used right now (closed, disk full, I/O error).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data violates an invariant (a bug or outside tampering).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The master keys given cannot open the database's signing secrets
    /// (a wrong or missing key): the message says which key is needed.
    #[error("{0}")]
    MasterKey(String),
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
    /// Forgets (a bounded number of) idempotency keys recorded before `before`.
    async fn prune_idempotency_keys(&self, before: Timestamp) -> StoreResult<Progress>;
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<ClaimedBatch>;
    /// Applies attempt outcomes; one result per completion, in order.
    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<CompletionResult>>;
    /// Returns unfinished leased deliveries to the queue, due at `now`
    /// (graceful shutdown). A release carrying an `interrupted` attempt logs
    /// it (and counts it); one that never started logs nothing.
    async fn release(&self, releases: Vec<Release>, now: Timestamp) -> StoreResult<()>;
    async fn queue_stats(&self, now: Timestamp) -> StoreResult<QueueStats>;
    /// Fails a bounded piece of the unfinished deliveries left behind by
    /// deleted webhooks (a crash in the middle of a delete).
    async fn fail_orphaned_deliveries(&self, now: Timestamp) -> StoreResult<Progress>;
    /// Notified when deliveries may have become due without a claim noticing:
    /// after a publish commits, after a webhook is re-enabled (and, for a
    /// shared database, when another node publishes).
    fn work_notifier(&self) -> std::sync::Arc<tokio::sync::Notify>;
}

/// Everything a running Herald needs from storage.
#[async_trait]
pub trait Store:
    ProjectStore
    + WebhookStore
    + EventStore
    + DeliveryQueue
    + DeliveryLog
    + SecretStore
    + BatchStore
    + ReplayStore
    + StatsStore
    + RetentionStore
    + OperationStore
    + SigningKeyStore
    + EventTypeStore
    + Send
    + Sync
    + 'static
{
    /// Checks that the database answers and can commit (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Whether other processes (nodes) claim from this store too. An
    /// exclusive store's dispatcher may prefetch past the per-endpoint cap,
    /// since no one else's requests count against it.
    fn is_shared(&self) -> bool;
    /// The admin key's SHA-256, shared by every node: stores `candidate` if
    /// none is stored yet, and returns the one in force.
    async fn init_admin_key_hash(&self, candidate: [u8; 32]) -> StoreResult<[u8; 32]>;
    /// Flushes and closes; later calls fail with `Unavailable`.
    async fn close(&self);
}

/// Which backend to open, and its settings.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// The embedded default: one process owns a data directory.
    Sqlite(sqlite::SqliteOptions),
    /// A shared PostgreSQL database: any number of nodes.
    Postgres(postgres::PostgresOptions),
}

/// Opens the configured backend, applies its migrations, and makes it
/// ready to claim: leases that a crashed predecessor held are ended (their
/// attempts logged as `interrupted`).
pub async fn open(config: &StorageConfig, clock: crate::clock::SharedClock) -> StoreResult<std::sync::Arc<dyn Store>> {
    match config {
        StorageConfig::Sqlite(options) => {
            let options = options.clone();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&options, clock.now()))
                .await
                .map_err(|e| StoreError::Unavailable(format!("opening the database: {e}")))??;
            Ok(std::sync::Arc::new(store))
        }
        StorageConfig::Postgres(options) => Ok(postgres::PostgresStore::open(options, clock).await?),
    }
}

/// Applies pending migrations to the configured database (creating it
/// for SQLite) and returns the schema version now in force.
pub async fn migrate(config: &StorageConfig) -> StoreResult<i64> {
    match config {
        StorageConfig::Sqlite(options) => {
            let options = options.clone();
            tokio::task::spawn_blocking(move || sqlite::migrate_only(&options))
                .await
                .map_err(|e| StoreError::Unavailable(format!("migrating the database: {e}")))?
        }
        StorageConfig::Postgres(options) => postgres::migrate_only(options).await,
    }
}

/// `herald master-key rotate`: makes the keyring's primary key the key in
/// force and seals every secret under it anew, in bounded transactions, on
/// a database that may be serving (PostgreSQL; on SQLite Herald must be
/// stopped, as the data directory's lock enforces). Safe to run again.
pub async fn rotate_master_key(config: &StorageConfig) -> StoreResult<MasterKeyRotation> {
    match config {
        StorageConfig::Sqlite(options) => {
            let options = options.clone();
            tokio::task::spawn_blocking(move || sqlite::rotate_master_key(&options))
                .await
                .map_err(|e| StoreError::Unavailable(format!("rotating the master key: {e}")))?
        }
        StorageConfig::Postgres(options) => postgres::rotate_master_key(options).await,
    }
}
