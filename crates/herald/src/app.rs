//! Wiring: opens the store, recovers after a crash, starts the HTTP API and
//! the dispatcher, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, auth::Authenticator};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::delivery::client::{ClientConfig, DeliveryClient};
use crate::delivery::{Dispatcher, DispatcherConfig, Jitter, RandomJitter};
use crate::net::ssrf::AddressPolicy;
use crate::store::Store;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

/// What tests replace: time, randomness, and whether the dispatcher loop
/// runs by itself (tests drive it with [`Dispatcher::run_once`]).
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
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    dispatcher_task: Option<JoinHandle<()>>,
}

pub async fn start(config: &Config, admin_key: &str, deps: Dependencies) -> anyhow::Result<RunningApp> {
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
    admin_key: &str,
    deps: Dependencies,
) -> anyhow::Result<RunningApp> {
    config.validate()?;
    let options = SqliteOptions {
        durability: config.storage.durability,
        read_connections: config.storage.read_connections,
        ..SqliteOptions::default()
    };
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir, &options))
        .await
        .context("opening the database")?
        .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);

    // One process owns this database (the store holds the directory lock),
    // so every lease in it belongs to a process that is gone.
    let recovered = store.recover_all_leases(deps.clock.now()).await?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "recovered deliveries that were in flight when Herald last stopped"
        );
    }

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
        },
    );

    let shutdown = CancellationToken::new();
    let metrics = crate::telemetry::metrics_handle();
    if let Some(handle) = metrics.clone() {
        tokio::spawn(crate::telemetry::upkeep(handle, shutdown.child_token()));
    }
    tokio::spawn(crate::maintenance::run(
        Arc::clone(&store),
        Arc::clone(&deps.clock),
        shutdown.child_token(),
    ));
    let state = AppState {
        store: Arc::clone(&store),
        auth: Arc::new(Authenticator::new(admin_key)),
        clock: deps.clock,
        address_policy: policy,
        limits: config.limits.clone(),
        metrics,
    };
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(api::server::serve(
        listener,
        api::router(state),
        config.http.clone(),
        shutdown.clone(),
    ));
    let dispatcher_task = deps
        .run_dispatcher
        .then(|| tokio::spawn(Arc::clone(&dispatcher).run(shutdown.child_token())));
    tracing::info!(%addr, "herald is listening");
    Ok(RunningApp {
        addr,
        store,
        dispatcher,
        shutdown,
        server,
        dispatcher_task,
    })
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
