//! The embedded default backend: SQLite in WAL mode, in `<data-dir>/herald.db`.
//!
//! Layout: [`writer`] owns the only read-write connection and applies all
//! writes with group commit; [`readers`] is a pool of read-only connections
//! for queries; the other modules hold the SQL of one concept each and are
//! plain functions over a `&Connection`, so they run unchanged on the writer
//! thread or a reader.
//!
//! One process owns a data directory: `herald.lock` is held with an
//! exclusive file lock for the life of the store. That is what makes
//! ending every lease at open safe: every lease in the database belongs to
//! a process that is gone.
//!
//! Files: the data directory is created mode 0700 and the database (with
//! its `-wal` and `-shm`, which SQLite creates with the database's mode)
//! 0600: they hold signing secrets.

mod batch_store;
mod batches;
mod delivery_log;
mod event_types;
mod events;
mod health;
mod job_webhooks;
mod master_key_file;
mod migrations;
mod operations;
mod projects;
mod queue;
mod readers;
mod replays;
mod retention;
mod rows;
mod secrets;
mod signing_keys;
mod stats;
mod webhooks;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::Notify;

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

use readers::ReadPool;
use writer::{Lane, Writer};

/// How far a commit must reach before a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit; an
    /// acknowledged write survives a process crash and a power cut.
    Full,
    /// `synchronous=NORMAL`: no fsync per commit; an acknowledged write
    /// survives a process crash, but a power cut can lose the last commits.
    Process,
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Where `herald.db` and `herald.lock` live.
    pub data_dir: std::path::PathBuf,
    pub durability: Durability,
    /// Read-only connections in the pool.
    pub read_connections: usize,
    /// Page cache per connection, in KiB.
    pub cache_kib: u32,
    /// The master keys that seal signing secrets (`HERALD_MASTER_KEY`);
    /// `None`: `<data_dir>/master.key`, generated at first start.
    pub master_keys: Option<Keyring>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            data_dir: std::path::PathBuf::from("./herald-data"),
            durability: Durability::Full,
            read_connections: 4,
            cache_kib: 32 * 1024,
            master_keys: None,
        }
    }
}

pub struct SqliteStore {
    writer: Writer,
    readers: Arc<ReadPool>,
    /// Notified after a commit that made deliveries due (wakes the dispatcher).
    work: Arc<Notify>,
    /// Notified when batch work may be waiting (created, cancelled, validated).
    batch_work: Arc<Notify>,
    /// Set by `close`; the writer thread exits at its next batch.
    closing: Arc<AtomicBool>,
    /// Set when a publish could not be written (disk full, I/O error);
    /// readiness then probes with a publish-sized write until one commits.
    failing: AtomicBool,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Seals secrets on their way in, opens them for the dispatcher.
    keyring: Arc<Keyring>,
    /// `:wait` long-polls, woken after a committed operation change.
    operation_waiters: Arc<crate::store::OperationWaiters>,
    /// Held for the store's life: the exclusive lock on the data directory.
    _lock: File,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `options.data_dir`,
    /// applies migrations, ends the leases a crashed predecessor left
    /// (logged `interrupted`, due at `now`) and starts the writer. Fails if
    /// another process holds the directory.
    pub fn open(options: &SqliteOptions, now: Timestamp) -> StoreResult<Self> {
        let data_dir = options.data_dir.as_path();
        create_private_dir(data_dir)?;
        let lock = lock_directory(data_dir)?;
        let path = data_dir.join("herald.db");
        create_private_file(&path)?;
        let mut conn = open_connection(&path, options, false)?;
        migrations::migrate(&mut conn)?;
        let keyring = open_secrets(&mut conn, options)?;
        let recovered = queue::recover_all_leases(&conn, now)?;
        batches::recover_leases(&conn)?;
        if recovered > 0 {
            tracing::warn!(
                recovered,
                "recovered deliveries that were in flight when Herald last stopped"
            );
        }
        let readers = (0..options.read_connections.max(1))
            .map(|_| open_connection(&path, options, true))
            .collect::<StoreResult<Vec<_>>>()?;
        let closing = Arc::new(AtomicBool::new(false));
        let (writer, thread) = Writer::spawn(conn, Arc::clone(&closing))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            writer,
            readers: ReadPool::new(readers),
            work: Arc::new(Notify::new()),
            batch_work: Arc::new(Notify::new()),
            closing,
            failing: AtomicBool::new(false),
            writer_thread: Mutex::new(Some(thread)),
            keyring: Arc::new(keyring),
            operation_waiters: crate::store::OperationWaiters::new(),
            _lock: lock,
        })
    }
}

/// Applies pending migrations (creating the database if needed) under the
/// directory lock, and returns the schema version.
pub(crate) fn migrate_only(options: &SqliteOptions) -> StoreResult<i64> {
    create_private_dir(&options.data_dir)?;
    let _lock = lock_directory(&options.data_dir)?;
    let path = options.data_dir.join("herald.db");
    create_private_file(&path)?;
    let mut conn = open_connection(&path, options, false)?;
    migrations::migrate(&mut conn)
}

/// The keyring, checked against the database (a wrong or missing master
/// key fails here), with plaintext rows from older versions sealed.
fn open_secrets(conn: &mut Connection, options: &SqliteOptions) -> StoreResult<Keyring> {
    let keyring = match &options.master_keys {
        Some(keyring) => keyring.clone(),
        None => master_key_file::load_or_create(&options.data_dir)?,
    };
    let sealed = secrets::prepare(conn, &keyring)?;
    if sealed > 0 {
        tracing::info!(
            sealed,
            "sealed plaintext signing secrets and keys left by an older Herald"
        );
    }
    let in_force = secrets::key_in_force(conn)?
        .ok_or_else(|| StoreError::Corrupt("no master key is recorded as in force".into()))?;
    if options.master_keys.is_none() {
        master_key_file::settle(&options.data_dir, &in_force)?;
    }
    let source = if options.master_keys.is_some() {
        "HERALD_MASTER_KEY"
    } else {
        "master.key"
    };
    tracing::info!(key = %in_force, source, "signing secrets are sealed under this master key");
    Ok(keyring)
}

/// `herald master-key rotate` on SQLite (Herald stopped: the directory lock
/// refuses otherwise). With `master_keys` given, seals everything under
/// its primary. Without, generates a new key into `master.key.next` first,
/// seals everything under it in one transaction, then installs it as
/// `master.key`.
pub(crate) fn rotate_master_key(options: &SqliteOptions) -> StoreResult<crate::store::MasterKeyRotation> {
    create_private_dir(&options.data_dir)?;
    let _lock = lock_directory(&options.data_dir)?;
    let path = options.data_dir.join("herald.db");
    create_private_file(&path)?;
    let mut conn = open_connection(&path, options, false)?;
    migrations::migrate(&mut conn)?;
    let (keyring, from_files) = match &options.master_keys {
        Some(keyring) => (keyring.clone(), false),
        None => {
            let files = master_key_file::load_or_create(&options.data_dir)?;
            secrets::prepare(&mut conn, &files)?;
            let in_force = secrets::key_in_force(&conn)?;
            master_key_file::settle(&options.data_dir, in_force.as_ref().unwrap_or(files.primary().id()))?;
            let current = master_key_file::load_or_create(&options.data_dir)?;
            let next = crate::domain::secret::MasterKey::generate().map_err(|e| StoreError::Unavailable(e.message))?;
            master_key_file::write_next(&options.data_dir, &next)?;
            (Keyring::new(next, vec![current.primary().clone()]), true)
        }
    };
    secrets::prepare(&mut conn, &keyring)?;
    let from = secrets::key_in_force(&conn)?;
    // The old sealed bytes are zeroed, not left in free space, and the WAL
    // is emptied after: a leaked old key then opens nothing in the files.
    conn.execute_batch("PRAGMA secure_delete = ON").map_err(unavailable)?;
    let tx = conn.transaction().map_err(unavailable)?;
    let mut resealed = 0;
    loop {
        let progress = secrets::reseal_piece(&tx, &keyring)?;
        resealed += progress.count();
        if progress.is_done() {
            break;
        }
    }
    loop {
        let progress = signing_keys::reseal_piece(&tx, &keyring)?;
        resealed += progress.count();
        if progress.is_done() {
            break;
        }
    }
    tx.commit().map_err(unavailable)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(unavailable)?;
    if from_files {
        master_key_file::install_next(&options.data_dir)?;
    }
    Ok(crate::store::MasterKeyRotation {
        from,
        to: keyring.primary().id().clone(),
        resealed,
    })
}

/// Creates the data directory readable by its owner only (an existing
/// directory keeps the mode its owner chose).
fn create_private_dir(dir: &Path) -> StoreResult<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| StoreError::Unavailable(format!("cannot create data directory {}: {e}", dir.display())))
}

/// Creates the database file mode 0600 before SQLite opens it, so that it
/// and the `-wal`/`-shm` files SQLite derives from it are private.
fn create_private_file(path: &Path) -> StoreResult<()> {
    let mut options = File::options();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", path.display())))
}

fn lock_directory(data_dir: &Path) -> StoreResult<File> {
    let lock_path = data_dir.join("herald.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "another Herald process is using {}; one process per data directory",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

fn open_connection(path: &Path, options: &SqliteOptions, read_only: bool) -> StoreResult<Connection> {
    let mut conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_handler(Some(wait_briefly)).map_err(unavailable)?;
    let synchronous = match options.durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -{cache};
         PRAGMA query_only = {query_only};",
        cache = options.cache_kib,
        query_only = if read_only { "ON" } else { "OFF" },
    ))
    .map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Busy handler: WAL locks are held for microseconds to milliseconds (a
/// reader's snapshot, the writer's checkpoint), so poll every 100 µs for up
/// to 5 s. SQLite's own busy timeout backs off to 100 ms sleeps, which
/// turned a 1 ms lock wait into a 100 ms publish.
fn wait_briefly(attempt: i32) -> bool {
    const POLL: Duration = Duration::from_micros(100);
    const GIVE_UP_AFTER: i32 = 50_000;
    if attempt >= GIVE_UP_AFTER {
        return false;
    }
    std::thread::sleep(POLL);
    true
}

pub(crate) fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

#[async_trait]
impl ProjectStore for SqliteStore {
    async fn create_project(&self, project: Project) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| projects::insert_project(conn, &project))
            .await
    }

    async fn list_projects(&self, page: PageRequest) -> StoreResult<Page<Project>> {
        self.readers
            .read(move |conn| projects::list_projects(conn, &page))
            .await
    }

    async fn get_project(&self, id: ProjectId) -> StoreResult<Option<Project>> {
        self.readers.read(move |conn| projects::get_project(conn, id)).await
    }

    async fn create_api_key(&self, key: ApiKey, key_hash: [u8; 32]) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| {
                projects::insert_api_key(conn, &key, &key_hash)
            })
            .await
    }

    async fn list_api_keys(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<ApiKey>> {
        self.readers
            .read(move |conn| projects::list_api_keys(conn, project, &page))
            .await
    }

    async fn revoke_api_key(&self, project: ProjectId, id: ApiKeyId, now: Timestamp) -> StoreResult<bool> {
        self.writer
            .write(Lane::Api, 1, move |conn| {
                projects::revoke_api_key(conn, project, id, now)
            })
            .await
    }

    async fn find_api_key(&self, key_hash: [u8; 32]) -> StoreResult<Option<(ApiKeyId, ProjectId)>> {
        self.readers
            .read(move |conn| projects::find_api_key(conn, &key_hash))
            .await
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, webhook: NewWebhook) -> StoreResult<Webhook> {
        let keyring = Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                webhooks::insert_webhook(conn, &keyring, &webhook)
            })
            .await
    }

    async fn list_webhooks(&self, project: ProjectId, page: PageRequest, now: Timestamp) -> StoreResult<Page<Webhook>> {
        self.readers
            .read(move |conn| webhooks::list_webhooks(conn, project, &page, now))
            .await
    }

    async fn get_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<Option<Webhook>> {
        self.readers
            .read(move |conn| webhooks::get_webhook(conn, project, id, now))
            .await
    }

    async fn update_webhook(
        &self,
        project: ProjectId,
        id: WebhookId,
        patch: WebhookPatch,
        now: Timestamp,
    ) -> StoreResult<Option<Webhook>> {
        let updated = self
            .writer
            .write(Lane::Api, 1, move |conn| {
                let updated = webhooks::update_webhook(conn, project, id, &patch, now)?;
                if updated.is_some() && patch.state == Some(crate::domain::WebhookState::Enabled) {
                    health::reset(conn, id)?;
                }
                Ok(updated)
            })
            .await?;
        // Re-enabling may make held deliveries due.
        self.work.notify_one();
        Ok(updated)
    }

    async fn delete_webhook(&self, project: ProjectId, id: WebhookId, now: Timestamp) -> StoreResult<bool> {
        let deleted = self
            .writer
            .write(Lane::Api, 1, move |conn| {
                webhooks::delete_webhook(conn, project, id, now)
            })
            .await?;
        if deleted {
            // One bounded job at a time, so a huge backlog never holds the writer.
            while !self
                .writer
                .write(Lane::Api, webhooks::FAIL_CHUNK, move |conn| {
                    webhooks::fail_deliveries_of_deleted(conn, Some(id), now)
                })
                .await?
                .is_done()
            {}
        }
        Ok(deleted)
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn publish(&self, request: PublishRequest) -> StoreResult<PublishOutcome> {
        let cost = request.events.len();
        let outcome = self
            .writer
            .write(Lane::Api, cost, move |conn| events::publish(conn, &request))
            .await;
        match &outcome {
            Err(StoreError::Unavailable(_)) => self.failing.store(true, Ordering::SeqCst),
            Ok(_) => self.failing.store(false, Ordering::SeqCst),
            Err(_) => {}
        }
        let outcome = outcome?;
        if matches!(outcome, PublishOutcome::Published { deliveries } if deliveries > 0) {
            self.work.notify_one();
        }
        Ok(outcome)
    }

    async fn get_event(&self, project: ProjectId, id: EventId) -> StoreResult<Option<EventDetail>> {
        self.readers
            .read(move |conn| events::get_event(conn, project, id))
            .await
    }

    async fn prune_idempotency_keys(&self, before: Timestamp) -> StoreResult<Progress> {
        self.writer
            .write(Lane::Api, 1, move |conn| events::prune_idempotency_keys(conn, before))
            .await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    async fn claim(&self, request: ClaimRequest) -> StoreResult<ClaimedBatch> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        let keyring = Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Queue, request.limit, move |conn| {
                queue::claim(conn, &request, token, &keyring)
            })
            .await
    }

    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<CompletionResult>> {
        let cost = completions.len();
        let (results, delivered) = self
            .writer
            .write(Lane::Queue, cost, move |conn| queue::complete(conn, &completions))
            .await?;
        if delivered {
            self.work.notify_one();
        }
        Ok(results)
    }

    async fn release(&self, leases: Vec<Release>, now: Timestamp) -> StoreResult<()> {
        let cost = leases.len();
        self.writer
            .write(Lane::Queue, cost, move |conn| queue::release(conn, &leases, now))
            .await
    }

    async fn queue_stats(&self, now: Timestamp) -> StoreResult<QueueStats> {
        self.readers.read(move |conn| queue::stats(conn, now)).await
    }

    async fn fail_orphaned_deliveries(&self, now: Timestamp) -> StoreResult<Progress> {
        self.writer
            .write(Lane::Api, webhooks::FAIL_CHUNK, move |conn| {
                webhooks::fail_deliveries_of_deleted(conn, None, now)
            })
            .await
    }

    fn work_notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.work)
    }
}

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn list_deliveries(
        &self,
        project: ProjectId,
        filter: DeliveryFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliverySummary>> {
        self.readers
            .read(move |conn| delivery_log::list_deliveries(conn, project, &filter, &page))
            .await
    }

    async fn get_delivery(&self, project: ProjectId, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>> {
        self.readers
            .read(move |conn| delivery_log::get_delivery(conn, project, id))
            .await
    }

    async fn lease_for_redelivery(&self, request: ManualLeaseRequest) -> StoreResult<ManualLease> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        let keyring = Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Queue, 1, move |conn| {
                delivery_log::lease_for_redelivery(conn, &request, token, &keyring)
            })
            .await
    }

    async fn create_ping(&self, request: PingRequest) -> StoreResult<Option<DeliveryJob>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        let keyring = Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                delivery_log::create_ping(conn, &request, token, &keyring)
            })
            .await
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn rotate_signing_secret(&self, request: RotateSigningSecret) -> StoreResult<Option<Webhook>> {
        let keyring = Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                secrets::rotate_signing_secret(conn, &keyring, &request)
            })
            .await
    }

    async fn purge_expired_secrets(&self, now: Timestamp) -> StoreResult<Progress> {
        self.writer
            .write(Lane::Api, 1, move |conn| secrets::purge_expired(conn, now))
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// A write that must commit: a full disk or a read-only file system
    /// makes it fail, so readiness follows the store's ability to commit.
    /// After a publish failed to commit, a tiny write may still fit in
    /// space the WAL already holds: the probe then writes as much as a
    /// large publish (and only then clears the failure).
    async fn ping(&self) -> StoreResult<()> {
        /// A large event's worth of bytes.
        const RECOVERY_PROBE_BYTES: i64 = 256 * 1024;
        let failing = self.failing.load(Ordering::SeqCst);
        let size = if failing { RECOVERY_PROBE_BYTES } else { 8 };
        self.writer
            .write(Lane::Api, 1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO settings (name, value) VALUES ('readiness_probe', randomblob(?1))
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                )
                .and_then(|mut stmt| stmt.execute([size]))
                .map(drop)
                .map_err(unavailable)
            })
            .await?;
        if failing {
            self.failing.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn init_admin_key_hash(&self, candidate: [u8; 32]) -> StoreResult<[u8; 32]> {
        self.writer
            .write(Lane::Api, 1, move |conn| {
                projects::init_admin_key_hash(conn, &candidate)
            })
            .await
    }

    async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wakes the writer so that it sees `closing`, finishes and checkpoints.
        let _ = self.writer.write(Lane::Api, 1, |_| Ok(())).await;
        let thread = self.writer_thread.lock().ok().and_then(|mut slot| slot.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.readers.close();
    }
}
