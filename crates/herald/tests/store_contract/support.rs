//! The harness every contract runs in (a fresh store of either backend,
//! driven by a `ManualClock`) and helpers that build domain values.

#[path = "../common/test_database.rs"]
mod test_database;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald::clock::{ManualClock, SharedClock};
use herald::domain::project::{ApiKey, Name, Project};
use herald::domain::secret::{Keyring, MasterKey};
use herald::domain::webhook::Webhook;
use herald::domain::{
    ApiKeyId, AttemptErrorKind, AttemptRecord, EndpointUri, EventId, EventType, ProjectId, SigningKind,
    SubscribedEvents, Timestamp, WebhookId,
};
use herald::store::postgres::PostgresOptions;
use herald::store::sqlite::SqliteOptions;
use herald::store::{
    ClaimRequest, Completion, DeliveryJob, DeliveryView, EventDetail, IdempotencyRecord, NewEvent, NewSecret,
    NewWebhook, NextStep, PublishOutcome, PublishRequest, StorageConfig, Store, StoreError,
};

/// 2026-01-01T00:00:00Z: where every test's clock starts.
pub const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// How long a claim in these tests leases for.
pub const LEASE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's store, its clock and what it takes to open it again.
pub struct Harness {
    pub backend: Backend,
    store: Option<Arc<dyn Store>>,
    pub clock: Arc<ManualClock>,
    config: StorageConfig,
    /// Stores opened earlier and left running (a PostgreSQL node that
    /// "crashed"): closed at the end.
    abandoned: Vec<Arc<dyn Store>>,
    closed: bool,
    /// The PostgreSQL database to drop at the end.
    database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = StorageConfig::Sqlite(SqliteOptions {
            data_dir: dir.path().to_path_buf(),
            ..SqliteOptions::default()
        });
        let clock = Arc::new(ManualClock::new(START));
        let store = open(&config, &clock).await;
        Self {
            backend: Backend::Sqlite,
            store: Some(store),
            clock,
            config,
            abandoned: Vec::new(),
            closed: false,
            database: None,
            _dir: Some(dir),
        }
    }

    /// `None` when PostgreSQL is unreachable outside CI: the test is skipped.
    pub async fn postgres() -> Option<Self> {
        let (url, database) = fresh_database().await?;
        let config = StorageConfig::Postgres(PostgresOptions {
            url,
            pool_size: 4,
            migrate_on_start: true,
            node_name: format!("contract-{:016x}", rand::random::<u64>()),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            master_keys: Some(test_database::test_keyring()),
        });
        let clock = Arc::new(ManualClock::new(START));
        let store = open(&config, &clock).await;
        Some(Self {
            backend: Backend::Postgres,
            store: Some(store),
            clock,
            config,
            abandoned: Vec::new(),
            closed: false,
            database: Some(database),
            _dir: None,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.store.as_ref().expect("the store is open")
    }

    pub fn now(&self) -> Timestamp {
        herald::clock::Clock::now(self.clock.as_ref())
    }

    pub fn advance(&self, by: Duration) -> Timestamp {
        self.clock.advance(by);
        self.now()
    }

    /// Starts the store again as if its process had died with work in
    /// flight. SQLite: closed (leases left outstanding) and reopened on the
    /// same directory. PostgreSQL: a second store with the same node name
    /// opens on the same database while the first is left as it was.
    pub async fn restart_after_crash(&mut self) {
        let old = self.store.take().expect("the store is open");
        match self.backend {
            Backend::Sqlite => {
                old.close().await;
                // The directory lock is held until the store is dropped.
                drop(old);
            }
            Backend::Postgres => self.abandoned.push(old),
        }
        self.store = Some(open(&self.config, &self.clock).await);
    }

    /// The master key the store was opened with: SQLite's generated
    /// `master.key`, or the PostgreSQL tests' key.
    pub fn master_key(&self) -> MasterKey {
        match &self._dir {
            Some(dir) => MasterKey::parse(&std::fs::read_to_string(dir.path().join("master.key")).expect("master.key"))
                .expect("a valid master key"),
            None => MasterKey::parse(test_database::TEST_MASTER_KEY).expect("the test key"),
        }
    }

    /// This store's configuration with other master keys.
    pub fn config_with_keys(&self, keys: Option<Keyring>) -> StorageConfig {
        let mut config = self.config.clone();
        match &mut config {
            StorageConfig::Sqlite(options) => options.master_keys = keys,
            StorageConfig::Postgres(options) => options.master_keys = keys,
        }
        config
    }

    /// Closes the store (SQLite: releasing the directory), so that a
    /// command that needs it alone can run; `reopen` starts it again.
    pub async fn stop(&mut self) {
        if let Some(store) = self.store.take() {
            store.close().await;
        }
    }

    /// Stops the store if it runs and opens it with `config`: the error,
    /// if it does not open (the store stays stopped).
    pub async fn reopen(&mut self, config: StorageConfig) -> Result<(), StoreError> {
        self.stop().await;
        let clock: SharedClock = self.clock.clone();
        let store = herald::store::open(&config, clock).await?;
        self.store = Some(store);
        self.config = config;
        Ok(())
    }

    /// Closes every store opened (once), then drops the test database.
    pub async fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(store) = self.store.take() {
            store.close().await;
        }
        for store in self.abandoned.drain(..) {
            store.close().await;
        }
        if let Some(database) = self.database.take()
            && let Ok((client, connection)) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
        {
            tokio::spawn(connection);
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .await;
        }
    }
}

async fn open(config: &StorageConfig, clock: &Arc<ManualClock>) -> Arc<dyn Store> {
    let clock: SharedClock = clock.clone();
    herald::store::open(config, clock).await.expect("open the store")
}

pub use test_database::admin_url;

/// A fresh database's URL and name; `None` (after saying so) when
/// PostgreSQL is unreachable outside CI.
async fn fresh_database() -> Option<(String, String)> {
    let client = match test_database::connect_admin().await {
        Ok(client) => client,
        Err(reason) => {
            if test_database::in_ci() {
                panic!("CI=true and PostgreSQL at {} is unreachable: {reason}", admin_url());
            }
            eprintln!(
                "SKIPPED: PostgreSQL at {} is unreachable ({reason}); start it or set HERALD_TEST_DATABASE_URL",
                admin_url()
            );
            return None;
        }
    };
    Some(test_database::create(&client).await)
}

// ---- domain values -------------------------------------------------------

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn minus_ms(t: Timestamp, ms: i64) -> Timestamp {
    Timestamp::from_millis(t.as_millis() - ms)
}

pub async fn new_project(store: &Arc<dyn Store>, name: &str, now: Timestamp) -> ProjectId {
    let id = ProjectId::generate();
    store
        .create_project(Project {
            id,
            name: Name::parse(name).unwrap(),
            create_time: now,
        })
        .await
        .expect("create a project");
    id
}

pub fn api_key(project: ProjectId, now: Timestamp) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        project_id: project,
        name: Some(Name::parse("ci").unwrap()),
        key_prefix: "hk_test".into(),
        create_time: now,
    }
}

/// A fresh signing secret of `kind`, as the API mints one.
pub fn secret(kind: SigningKind) -> NewSecret {
    NewSecret::mint(kind).expect("minted")
}

pub fn new_webhook(project: ProjectId, patterns: &[&str], kind: SigningKind, now: Timestamp) -> NewWebhook {
    NewWebhook {
        id: WebhookId::generate(),
        project_id: project,
        name: Name::parse("receiver").unwrap(),
        uri: EndpointUri::parse("https://hooks.example.com/herald").unwrap(),
        subscribed_events: SubscribedEvents::parse(patterns).unwrap(),
        signing: kind,
        controls: Default::default(),
        secret: secret(kind),
        now,
        max_per_project: 100,
    }
}

/// An enabled HMAC webhook subscribed to `patterns`.
pub async fn webhook(store: &Arc<dyn Store>, project: ProjectId, patterns: &[&str], now: Timestamp) -> WebhookId {
    store
        .create_webhook(new_webhook(project, patterns, SigningKind::Hmac, now))
        .await
        .expect("create a webhook")
        .id
}

pub async fn get_webhook(store: &Arc<dyn Store>, project: ProjectId, id: WebhookId, now: Timestamp) -> Webhook {
    store
        .get_webhook(project, id, now)
        .await
        .unwrap()
        .expect("the webhook exists")
}

pub fn event(event_type: &str, now: Timestamp) -> NewEvent {
    let id = EventId::generate();
    NewEvent {
        id,
        event_type: EventType::parse(event_type).unwrap(),
        timestamp: now,
        payload: Bytes::from(format!(r#"{{"type":"{event_type}","id":"{id}"}}"#)),
    }
}

pub fn request(project: ProjectId, events: Vec<NewEvent>, now: Timestamp) -> PublishRequest {
    PublishRequest {
        project_id: project,
        events,
        idempotency: None,
        now,
        max_deliveries: 10_000,
    }
}

pub fn keyed(mut request: PublishRequest, key: &str, body: &str, response: &str) -> PublishRequest {
    use sha2::Digest;
    request.idempotency = Some(IdempotencyRecord {
        key: key.into(),
        request_hash: sha2::Sha256::digest(body.as_bytes()).into(),
        response: response.as_bytes().to_vec(),
    });
    request
}

/// Publishes one event per type (one request) and returns their ids.
pub async fn publish(store: &Arc<dyn Store>, project: ProjectId, types: &[&str], now: Timestamp) -> Vec<EventId> {
    let events: Vec<NewEvent> = types.iter().map(|t| event(t, now)).collect();
    let ids = events.iter().map(|e| e.id).collect();
    let outcome = store.publish(request(project, events, now)).await.expect("publish");
    assert!(matches!(outcome, PublishOutcome::Published { .. }), "{outcome:?}");
    ids
}

pub async fn get_event(store: &Arc<dyn Store>, project: ProjectId, id: EventId) -> EventDetail {
    store.get_event(project, id).await.unwrap().expect("the event exists")
}

/// The event's only delivery.
pub async fn delivery(store: &Arc<dyn Store>, project: ProjectId, id: EventId) -> DeliveryView {
    let mut event = get_event(store, project, id).await;
    assert_eq!(event.deliveries.len(), 1, "one delivery: {:?}", event.deliveries);
    event.deliveries.remove(0)
}

pub fn claim(now: Timestamp, limit: usize, default_room: u32, room: Vec<(WebhookId, u32)>, max: u32) -> ClaimRequest {
    ClaimRequest {
        now,
        lease_until: now.saturating_add(LEASE),
        limit,
        default_room,
        room,
        max_leased_per_webhook: max,
    }
}

/// Everything due, with no caps that matter.
pub fn claim_all(now: Timestamp) -> ClaimRequest {
    claim(now, 1000, 1000, vec![], 1000)
}

pub async fn claim_jobs(store: &Arc<dyn Store>, request: ClaimRequest) -> Vec<DeliveryJob> {
    store.claim(request).await.expect("claim").jobs
}

pub fn attempt(number: u32, now: Timestamp, status: u16) -> AttemptRecord {
    let ok = (200..300).contains(&status);
    AttemptRecord {
        number,
        start_time: now,
        duration: Duration::from_millis(7),
        status_code: Some(status),
        response_excerpt: Some(format!("status {status}")),
        error_kind: (!ok).then_some(AttemptErrorKind::HttpStatus),
        error_message: (!ok).then(|| format!("the endpoint answered {status}")),
    }
}

/// The completion a worker reports for `job` after an answer of `status`.
pub fn completion(job: &DeliveryJob, status: u16, next: NextStep, now: Timestamp) -> Completion {
    let ok = (200..300).contains(&status);
    Completion {
        delivery_id: job.delivery_id,
        webhook_id: job.endpoint.webhook_id,
        lease: job.lease,
        attempt: Some(attempt(job.attempt_number, now, status)),
        next,
        last_error: (!ok).then(|| "http_status".to_owned()),
        disable_webhook: None,
        health: None,
        now,
    }
}
