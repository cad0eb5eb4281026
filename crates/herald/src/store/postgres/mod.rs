//! The shared backend: PostgreSQL, for any number of Herald nodes on one
//! database.
//!
//! Layout: [`connect`] (URLs, the pool, error classes), [`migrations`]
//! (versioned, under an advisory lock), [`events`] (group-committed
//! publishes), [`queue`] (claim with `FOR UPDATE SKIP LOCKED`, fenced
//! completions), [`nodes`] (registration, heartbeats, failover),
//! [`listener`] (`LISTEN/NOTIFY` wake-ups), and one SQL file per concept.
//!
//! Every write commits with `synchronous_commit = on` before its caller
//! hears `Ok`. No transaction is held across a call out of the store.

mod batch_store;
mod batches;
mod connect;
mod delivery_log;
mod event_types;
mod events;
mod health;
mod hints;
mod job_webhooks;
mod listener;
mod migrations;
mod nodes;
mod operations;
mod projects;
mod queue;
mod replays;
mod retention;
mod rows;
mod secrets;
mod signing_keys;
mod stats;
mod webhooks;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use connect::{check_url, redact_url};

use crate::clock::SharedClock;
use crate::domain::project::{ApiKey, Project};
use crate::domain::secret::Keyring;
use crate::domain::webhook::Webhook;
use crate::domain::{ApiKeyId, DeliveryId, EventId, ProjectId, Timestamp, WebhookId};
use crate::store::{
    ClaimRequest, ClaimedBatch, Completion, CompletionResult, DeliveryDetail, DeliveryFilter, DeliveryJob, DeliveryLog,
    DeliveryQueue, DeliverySummary, EventDetail, EventStore, LeaseToken, ManualLease, ManualLeaseRequest, NewWebhook,
    Page, PageRequest, PingRequest, Progress, ProjectStore, PublishOutcome, PublishRequest, QueueStats, Release,
    RotateSigningSecret, SecretStore, Store, StoreError, StoreResult, WebhookPatch, WebhookStore,
};
use connect::{pool_error, store_error};
use nodes::Node;

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// `postgres://…` (secret: may hold a password; never logged whole).
    pub url: String,
    /// Connections in this node's pool.
    pub pool_size: usize,
    /// Apply pending migrations at open (else refuse an outdated schema).
    pub migrate_on_start: bool,
    /// This node's stable name.
    pub node_name: String,
    pub heartbeat: Duration,
    pub node_timeout: Duration,
    /// The master keys that seal signing secrets (`HERALD_MASTER_KEY`,
    /// `HERALD_PREVIOUS_MASTER_KEYS`). Required: every node of a shared
    /// database must hold the key in force, so none is ever generated here.
    pub master_keys: Option<Keyring>,
}

/// The keyring, or the one-line reason a shared database cannot start without it.
fn required_keyring(options: &PostgresOptions) -> StoreResult<Keyring> {
    options.master_keys.clone().ok_or_else(|| {
        StoreError::MasterKey(
            "missing master key: on PostgreSQL every node needs HERALD_MASTER_KEY (the same key on every node; \
             generate one with `herald master-key generate`)"
                .into(),
        )
    })
}

pub struct PostgresStore {
    pool: Pool,
    /// Asynchronous-commit sessions for scheduling hints (see `hints`).
    hint_pool: Pool,
    publisher: events::Publisher,
    /// Notified by this node's publishes and by `LISTEN` (other nodes').
    work: Arc<Notify>,
    /// Notified when batch work may be waiting (see `BatchStore`).
    batch_work: Arc<Notify>,
    node: Node,
    /// `:wait` long-polls on this node: woken after this node's commits
    /// and by `LISTEN herald_operations` for other nodes'.
    operation_waiters: Arc<crate::store::OperationWaiters>,
    clock: SharedClock,
    /// Seals secrets on their way in, opens them for the dispatcher.
    keyring: Keyring,
    /// Stops the background tasks (listener, heartbeats).
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("node", &self.node.name)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (waiting for a server that is not up yet, failing at once
    /// on a configuration that can never work), migrates, registers this
    /// node (ending its previous run's leases) and starts the listener and
    /// heartbeats.
    pub async fn open(options: &PostgresOptions, clock: SharedClock) -> StoreResult<Arc<Self>> {
        let keyring = required_keyring(options)?;
        let config = connect::parse(&options.url).map_err(StoreError::Unavailable)?;
        let pool = connect::pool(config.clone(), options.pool_size, &options.node_name, true)?;
        let hint_pool = connect::pool(config.clone(), 2, &options.node_name, false)?;
        wait_for_server(&pool, &options.url, None).await?;
        {
            let mut client = pool.get().await.map_err(pool_error)?;
            if options.migrate_on_start {
                migrations::migrate(&mut client).await?;
            } else {
                let current = migrations::current_version(&client).await?;
                if current != migrations::known_version() {
                    return Err(StoreError::Unavailable(format!(
                        "the database schema is at version {current}, this Herald needs {}: run `herald migrate`",
                        migrations::known_version()
                    )));
                }
            }
        }
        {
            let mut client = pool.get().await.map_err(pool_error)?;
            let tx = client.transaction().await.map_err(store_error)?;
            let sealed = secrets::prepare(&tx, &keyring).await?;
            let in_force = secrets::key_in_force(&tx, false).await?;
            tx.commit().await.map_err(store_error)?;
            if let Some(key) = in_force {
                tracing::info!(%key, "signing secrets are sealed under this master key");
            }
            if sealed > 0 {
                tracing::info!(
                    sealed,
                    "sealed plaintext signing secrets and keys left by an older Herald"
                );
            }
        }
        let mut node = Node::new(options.node_name.clone());
        node.master_key_ids = keyring.ids().iter().map(|id| id.as_str()).collect::<Vec<_>>().join(",");
        let resumed = nodes::register(&pool, &node, &clock).await?;
        hints::repair(&pool).await?;
        if resumed > 0 {
            tracing::warn!(resumed, node = %node.name, "resumed deliveries this node had in flight when it last stopped");
        }
        let work = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (waker, waker_task) = hints::Waker::spawn(hint_pool.clone(), stop.child_token());
        let operation_waiters = crate::store::OperationWaiters::new();
        let tasks = vec![
            waker_task,
            tokio::spawn(listener::run(config.clone(), Arc::clone(&work), stop.child_token())),
            tokio::spawn(listener::run_channel(
                config,
                operations::CHANNEL,
                operations::wake_handler(Arc::clone(&operation_waiters)),
                stop.child_token(),
            )),
            tokio::spawn(nodes::run(
                pool.clone(),
                hint_pool.clone(),
                node.clone(),
                options.heartbeat,
                options.node_timeout,
                Arc::clone(&clock),
                stop.child_token(),
            )),
        ];
        tracing::info!(url = %redact_url(&options.url), node = %node.name, "using PostgreSQL");
        Ok(Arc::new(Self {
            publisher: events::Publisher::spawn(pool.clone(), hint_pool.clone(), waker, Arc::clone(&work)),
            pool,
            hint_pool,
            work,
            batch_work: Arc::new(Notify::new()),
            node,
            operation_waiters,
            clock,
            keyring,
            stop,
            tasks: Mutex::new(tasks),
        }))
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(pool_error)
    }
}

/// Waits until the server accepts a connection: retries with backoff
/// (logging the URL without its password) while it is unreachable, fails
/// at once when it refuses us for good (wrong password, unknown database).
/// `tries`: give up after this many (`None`: never).
async fn wait_for_server(pool: &Pool, url: &str, tries: Option<u32>) -> StoreResult<()> {
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match pool.get().await {
            Ok(_) => return Ok(()),
            Err(deadpool_postgres::PoolError::Backend(error)) if connect::is_permanent(&error) => {
                return Err(StoreError::Unavailable(format!(
                    "PostgreSQL at {} refused the connection: {}",
                    redact_url(url),
                    store_error(error)
                )));
            }
            Err(error) => pool_error(error),
        };
        if tries.is_some_and(|tries| attempt >= tries) {
            return Err(StoreError::Unavailable(format!(
                "cannot reach PostgreSQL at {}: {error}",
                redact_url(url)
            )));
        }
        tracing::warn!(url = %redact_url(url), %error, "cannot reach PostgreSQL; retrying in {backoff:?} (not ready meanwhile)");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// `herald migrate`: applies pending migrations and returns the version.
pub(crate) async fn migrate_only(options: &PostgresOptions) -> StoreResult<i64> {
    let config = connect::parse(&options.url).map_err(StoreError::Unavailable)?;
    let pool = connect::pool(config, 2, &options.node_name, true)?;
    wait_for_server(&pool, &options.url, Some(5)).await?;
    let mut client = pool.get().await.map_err(pool_error)?;
    migrations::migrate(&mut client).await
}

/// `herald master-key rotate` on PostgreSQL, beside running nodes: each
/// piece is one short transaction (the switch of the key in force, then
/// up to `RESEAL_CHUNK` rows), so deliveries never wait on it.
pub(crate) async fn rotate_master_key(options: &PostgresOptions) -> StoreResult<crate::store::MasterKeyRotation> {
    let keyring = required_keyring(options)?;
    let config = connect::parse(&options.url).map_err(StoreError::Unavailable)?;
    let pool = connect::pool(config, 2, &options.node_name, true)?;
    wait_for_server(&pool, &options.url, Some(5)).await?;
    let mut client = pool.get().await.map_err(pool_error)?;
    let current = migrations::current_version(&client).await?;
    if current != migrations::known_version() {
        return Err(StoreError::Unavailable(format!(
            "the database schema is at version {current}, this Herald needs {}: run `herald migrate`",
            migrations::known_version()
        )));
    }
    secrets::check_nodes_hold(&client, keyring.primary().id()).await?;
    let tx = client.transaction().await.map_err(store_error)?;
    secrets::prepare(&tx, &keyring).await?;
    let from = secrets::key_in_force(&tx, false).await?;
    tx.commit().await.map_err(store_error)?;
    let mut resealed = 0;
    loop {
        let tx = client.transaction().await.map_err(store_error)?;
        let progress = secrets::reseal_piece(&tx, &keyring).await?;
        tx.commit().await.map_err(store_error)?;
        resealed += progress.count();
        if progress.is_done() {
            break;
        }
    }
    // The key in force is the new one now: every signing key inserted
    // from here on is sealed under it, so these pieces finish.
    loop {
        let tx = client.transaction().await.map_err(store_error)?;
        let progress = signing_keys::reseal_piece(&tx, &keyring).await?;
        tx.commit().await.map_err(store_error)?;
        resealed += progress.count();
        if progress.is_done() {
            break;
        }
    }
    Ok(crate::store::MasterKeyRotation {
        from,
        to: keyring.primary().id().clone(),
        resealed,
    })
}

/// Runs `$body` with `$tx` a transaction on a pooled connection; commits
/// if the body succeeds (an early `?` return rolls back).
macro_rules! in_transaction {
    ($self:ident, |$tx:ident| $body:expr) => {
        async {
            let mut client = $self.client().await?;
            let $tx = client.transaction().await.map_err(store_error)?;
            let out = $body;
            $tx.commit().await.map_err(store_error)?;
            Ok::<_, StoreError>(out)
        }
        .await
    };
}

#[async_trait]
impl ProjectStore for PostgresStore {
    async fn create_project(&self, project: Project) -> StoreResult<()> {
        projects::insert_project(&self.client().await?, &project).await
    }

    async fn list_projects(&self, page: PageRequest) -> StoreResult<Page<Project>> {
        projects::list_projects(&self.client().await?, &page).await
    }

    async fn get_project(&self, id: ProjectId) -> StoreResult<Option<Project>> {
        projects::get_project(&self.client().await?, id).await
    }

    async fn create_api_key(&self, key: ApiKey, key_hash: [u8; 32]) -> StoreResult<()> {
        projects::insert_api_key(&self.client().await?, &key, &key_hash).await
    }

    async fn list_api_keys(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<ApiKey>> {
        projects::list_api_keys(&self.client().await?, project, &page).await
    }

    async fn revoke_api_key(&self, project: ProjectId, id: ApiKeyId, now: Timestamp) -> StoreResult<bool> {
        projects::revoke_api_key(&self.client().await?, project, id, now).await
    }

    async fn find_api_key(&self, key_hash: [u8; 32]) -> StoreResult<Option<(ApiKeyId, ProjectId)>> {
        projects::find_api_key(&self.client().await?, &key_hash).await
    }
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, webhook: NewWebhook) -> StoreResult<Webhook> {
        in_transaction!(self, |tx| webhooks::insert_webhook(&tx, &self.keyring, &webhook)
            .await?)
    }

    async fn list_webhooks(&self, project: ProjectId, page: PageRequest, now: Timestamp) -> StoreResult<Page<Webhook>> {
        webhooks::list_webhooks(&self.client().await?, project, &page, now).await
    }

    async fn get_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<Option<Webhook>> {
        webhooks::get_webhook(&self.client().await?, project, id, now).await
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> StoreResult<Option<Webhook>> {
        let updated = in_transaction!(self, |tx| {
            let updated = webhooks::update_webhook(&tx, project, id, &patch, now).await?;
            if updated.is_some() && patch.state == Some(crate::domain::WebhookState::Enabled) {
                health::reset(&tx, id).await?;
            }
            // Re-enabling may make held deliveries due, on any node.
            tx.execute("SELECT pg_notify('herald_work', '')", &[])
                .await
                .map_err(store_error)?;
            updated
        })?;
        self.work.notify_one();
        Ok(updated)
    }

    async fn delete_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<bool> {
        let deleted = in_transaction!(self, |tx| webhooks::delete_webhook(&tx, project, id, now).await?)?;
        if deleted {
            // Bounded transactions, so a huge backlog never holds locks long.
            while !in_transaction!(self, |tx| webhooks::fail_deliveries_of_deleted(&tx, Some(id), now)
                .await?)?
            .is_done()
            {}
        }
        Ok(deleted)
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn publish(&self, request: PublishRequest) -> StoreResult<PublishOutcome> {
        self.publisher.publish(request).await
    }

    async fn get_event(&self, project: ProjectId, id: EventId) -> StoreResult<Option<EventDetail>> {
        events::get_event(&self.client().await?, project, id).await
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> StoreResult<Progress> {
        events::prune_idempotency_keys(&self.client().await?, before).await
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<ClaimedBatch> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        let (batch, visited) = in_transaction!(self, |tx| {
            queue::asynchronous_commit(&tx).await?;
            queue::claim(&tx, &request, token, &self.node.id, &self.keyring).await?
        })?;
        hints::recheck_after_commit(&self.hint_pool, &visited).await;
        Ok(batch)
    }

    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<CompletionResult>> {
        let (results, lowered, fanned) = in_transaction!(self, |tx| {
            queue::asynchronous_commit(&tx).await?;
            let (results, lowered) = queue::complete(&tx, &completions).await?;
            stats::record(&tx, &completions).await?;
            let fanned = health::apply(&tx, &completions, &results).await?;
            (results, lowered, fanned)
        })?;
        hints::lower_after_commit(&self.hint_pool, &lowered.due).await;
        hints::lower_fifo_after_commit(&self.hint_pool, &lowered.fifo_freed).await;
        for fanned in fanned {
            self.publisher.after_commit(fanned).await;
        }
        Ok(results)
    }

    async fn release(&self, releases: Vec<Release>, now: Timestamp) -> StoreResult<()> {
        let due = in_transaction!(self, |tx| {
            let due = queue::release(&tx, &releases, now).await?;
            tx.execute("SELECT pg_notify('herald_work', '')", &[])
                .await
                .map_err(store_error)?;
            due
        })?;
        hints::lower_after_commit(&self.hint_pool, &due).await;
        Ok(())
    }

    async fn queue_stats(&self, now: Timestamp) -> StoreResult<QueueStats> {
        queue::stats(&self.client().await?, now).await
    }

    async fn fail_orphaned_deliveries(&self, now: Timestamp) -> StoreResult<Progress> {
        in_transaction!(self, |tx| webhooks::fail_deliveries_of_deleted(&tx, None, now).await?)
    }

    fn work_notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.work)
    }
}

#[async_trait]
impl DeliveryLog for PostgresStore {
    async fn list_deliveries(
        &self,
        project: ProjectId,
        filter: DeliveryFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliverySummary>> {
        delivery_log::list_deliveries(&self.client().await?, project, &filter, &page).await
    }

    async fn get_delivery(&self, project: ProjectId, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
        delivery_log::get_delivery(&self.client().await?, project, id).await
    }

    async fn lease_for_redelivery(&self, request: ManualLeaseRequest) -> StoreResult<ManualLease> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        in_transaction!(self, |tx| {
            delivery_log::lease_for_redelivery(&tx, &request, token, &self.node.id, &self.keyring).await?
        })
    }

    async fn create_ping(&self, request: PingRequest) -> StoreResult<Option<DeliveryJob>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        in_transaction!(self, |tx| delivery_log::create_ping(
            &tx,
            &request,
            token,
            &self.node.id,
            &self.keyring
        )
        .await?)
    }
}

#[async_trait]
impl SecretStore for PostgresStore {
    async fn rotate_signing_secret(&self, request: RotateSigningSecret) -> StoreResult<Option<Webhook>> {
        in_transaction!(self, |tx| secrets::rotate_signing_secret(&tx, &self.keyring, &request)
            .await?)
    }

    async fn purge_expired_secrets(&self, now: Timestamp) -> StoreResult<Progress> {
        secrets::purge_expired(&self.client().await?, now).await
    }
}

#[async_trait]
impl Store for PostgresStore {
    /// A write that must commit (this node's heartbeat): fails while the
    /// server is down, read-only or out of disk.
    async fn ping(&self) -> StoreResult<()> {
        nodes::heartbeat(&self.client().await?, &self.node).await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn init_admin_key_hash(&self, candidate: [u8; 32]) -> StoreResult<[u8; 32]> {
        projects::init_admin_key_hash(&self.client().await?, &candidate).await
    }

    async fn close(&self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = self.tasks.lock().map(|mut t| t.drain(..).collect()).unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
        if let Err(error) = nodes::deregister(&self.pool, &self.node, &self.clock).await {
            tracing::warn!(%error, "could not deregister this node; the others will notice it is gone");
        }
        self.pool.close();
        self.hint_pool.close();
    }
}
