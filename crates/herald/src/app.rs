//! Wiring: opens the store (which recovers after a crash), starts the HTTP
//! API and the dispatcher as the node's role says, and shuts them down in
//! order. Nothing here names a storage backend: `store::open` chooses.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, auth::Authenticator};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::delivery::client::{ClientConfig, DeliveryClient};
use crate::delivery::{Dispatcher, DispatcherConfig, Jitter, ManualAttempts, RandomJitter};
use crate::net::ssrf::AddressPolicy;
use crate::store::Store;

/// What tests replace: time, randomness, and whether the background loops
/// (the dispatcher and housekeeping) run by themselves; tests that step
/// them call [`Dispatcher::run_once`] and `maintenance::run_once`, so no
/// background step races a test's moves of the manual clock.
pub struct Dependencies {
    pub clock: SharedClock,
    pub jitter: Arc<dyn Jitter>,
    pub run_dispatcher: bool,
}

impl Default for Dependencies {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RandomJitter),
            run_dispatcher: true,
        }
    }
}

pub struct RunningApp {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    /// Runs batches; tests step it with `run_once`.
    pub batches: Arc<crate::batch::BatchEngine>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    dispatcher_task: Option<JoinHandle<()>>,
    batch_task: Option<JoinHandle<()>>,
}

/// Starts Herald. `admin_key`: the key to accept as admin; `None` uses the
/// one whose hash the store holds, generating one (printed once to stderr)
/// if it holds none.
pub async fn start(config: &Config, admin_key: Option<&str>, deps: Dependencies) -> anyhow::Result<RunningApp> {
    start_on(bind(config.listen)?, config, admin_key, deps).await
}

/// Binds the API's port. Done before anything is created on disk, so that
/// a port in use is the first and only error.
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} (is another Herald or program using it? choose another with --listen)")
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// [`start`] on a listener bound by [`bind`] (`config.listen` is ignored).
pub async fn start_on(
    listener: std::net::TcpListener,
    config: &Config,
    admin_key: Option<&str>,
    deps: Dependencies,
) -> anyhow::Result<RunningApp> {
    config.validate()?;
    let store = crate::store::open(&config.storage_config(), Arc::clone(&deps.clock))
        .await
        .context("opening the database")?;
    let admin_key_hash = admin_key_hash(store.as_ref(), admin_key).await?;

    let policy = Arc::new(AddressPolicy::new(config.security.allow_target_cidrs.clone()));
    let client = DeliveryClient::new(
        Arc::clone(&policy),
        ClientConfig {
            timeout: config.delivery.timeout,
            excerpt_bytes: config.delivery.response_excerpt_bytes,
            max_idle_per_host: usize::try_from(config.delivery.max_in_flight_per_endpoint).unwrap_or(64),
            ca_file: config.delivery.ca_file.clone(),
        },
    )
    .context("building the HTTPS client")?;
    let manual_attempts = Arc::new(ManualAttempts::new(
        Arc::clone(&store),
        client.clone(),
        config.retry_policy(),
        Arc::clone(&deps.clock),
        config.lease(),
    ));
    let dispatcher = Dispatcher::new(
        Arc::clone(&store),
        client,
        config.retry_policy(),
        Arc::clone(&deps.clock),
        deps.jitter,
        DispatcherConfig {
            max_in_flight: config.delivery.max_in_flight,
            max_in_flight_per_endpoint: config.delivery.max_in_flight_per_endpoint,
            lease: config.lease(),
            idle_poll: config.delivery.idle_poll,
            shutdown_grace: config.delivery.shutdown_grace,
            health: config.health.policy(),
        },
    );

    let batches = Arc::new(
        crate::batch::BatchEngine::new(Arc::clone(&store), Arc::clone(&deps.clock), config)
            .context("setting up the batch upstreams")?,
    );

    let server_keys = Arc::new(crate::server_keys::ServerKeys::new(
        Arc::clone(&store),
        Arc::clone(&deps.clock),
    ));
    let shutdown = CancellationToken::new();
    let metrics = crate::telemetry::metrics_handle();
    if let Some(handle) = metrics.clone() {
        tokio::spawn(crate::telemetry::upkeep(handle, shutdown.child_token()));
    }
    if deps.run_dispatcher {
        tokio::spawn(crate::maintenance::run(
            Arc::clone(&store),
            Arc::clone(&deps.clock),
            config.retention.max_age,
            shutdown.child_token(),
        ));
    }
    if deps.run_dispatcher && config.node.role.delivers() {
        tokio::spawn(crate::replay::run(
            Arc::clone(&store),
            Arc::clone(&deps.clock),
            shutdown.child_token(),
        ));
        tokio::spawn(crate::operation_sweep::run(
            Arc::clone(&store),
            Arc::clone(&deps.clock),
            shutdown.child_token(),
        ));
    }
    let state = AppState {
        store: Arc::clone(&store),
        auth: Arc::new(Authenticator::from_hash(admin_key_hash)),
        clock: deps.clock,
        address_policy: policy,
        limits: config.limits.clone(),
        metrics,
        manual_attempts,
        batches: config.batches.clone(),
        max_wait: crate::api::max_wait(config.http.request_timeout),
        server_keys: Arc::clone(&server_keys),
        retry_window: config.delivery.max_age,
    };
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(api::server::serve(
        listener,
        api::router(state, config.node.role),
        config.http.clone(),
        shutdown.clone(),
    ));
    let dispatcher_task = (deps.run_dispatcher && config.node.role.delivers())
        .then(|| tokio::spawn(Arc::clone(&dispatcher).run(shutdown.child_token())));
    // Batch work runs on nodes that deliver: it is background work too.
    let batch_task = (deps.run_dispatcher && config.node.role.delivers())
        .then(|| tokio::spawn(Arc::clone(&batches).run(shutdown.child_token())));
    tracing::info!(%addr, role = ?config.node.role, "herald is listening");
    Ok(RunningApp {
        addr,
        store,
        dispatcher,
        batches,
        shutdown,
        server,
        dispatcher_task,
        batch_task,
    })
}

/// The admin key's hash: `given`'s, or the store's (generating and
/// printing a key once if the store has none).
async fn admin_key_hash(store: &dyn Store, given: Option<&str>) -> anyhow::Result<[u8; 32]> {
    if let Some(key) = given {
        return Ok(crate::api::auth::hash_key(key));
    }
    let candidate = crate::admin_key::generate();
    let candidate_hash = crate::api::auth::hash_key(&candidate);
    let in_force = store
        .init_admin_key_hash(candidate_hash)
        .await
        .context("reading the admin key's hash")?;
    if in_force == candidate_hash {
        eprintln!(
            "Generated the admin key (shown only now; every node sharing this database accepts it):\n\n    {candidate}\n"
        );
    } else {
        tracing::info!("using the admin key stored in the database (set HERALD_ADMIN_KEY to override)");
    }
    Ok(in_force)
}

impl RunningApp {
    /// Stops accepting requests and claims, lets in-flight work finish
    /// within the grace period, releases the rest, and closes the database.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        let served = self.server.await;
        if let Some(task) = self.dispatcher_task {
            let _ = task.await;
        }
        if let Some(task) = self.batch_task {
            let _ = task.await;
        }
        self.store.close().await;
        served
            .context("the HTTP server task failed")?
            .context("the HTTP server failed")?;
        Ok(())
    }

    /// A token that triggers the same shutdown (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
