//! The batch engine: OpenAI-compatible batches executed against the
//! configured upstreams.
//!
//! Two kinds of leased work run in the generic runner (`work`):
//! [`validate::Validation`] turns a `validating` batch's input file into
//! stored requests, and [`requests::Requests`] sends them and persists the
//! results, finishing batches between rounds. [`upstream`] knows the
//! upstreams (and [`echo`], the built-in one). Every status change and its
//! event commit together, in the store.

pub mod echo;
pub mod requests;
pub mod upstream;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::batch::LineLimits;
use crate::store::{Store, StoreResult};
use crate::work::{Runner, RunnerConfig, WorkKind};
use requests::{Requests, RetrySettings};
use upstream::{UpstreamSetupError, Upstreams};
use validate::Validation;

pub struct BatchEngine {
    validation: Arc<Runner<Validation>>,
    requests: Arc<Runner<Requests>>,
    store: Arc<dyn Store>,
    upstreams: Arc<Upstreams>,
}

impl BatchEngine {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, config: &Config) -> Result<Self, UpstreamSetupError> {
        let b = &config.batches;
        let upstreams = Arc::new(Upstreams::new(
            &config.upstreams,
            b.echo_upstream.then_some(b.echo_latency),
            &config.security.allow_target_cidrs,
            config.delivery.ca_file.as_deref(),
        )?);
        let requests_notify = Arc::new(Notify::new());
        let validation = Validation {
            store: Arc::clone(&store),
            upstreams: Arc::clone(&upstreams),
            clock: Arc::clone(&clock),
            lease: b.lease,
            limits: LineLimits {
                max_line_bytes: b.max_line_bytes,
            },
            max_requests: b.max_requests_per_batch,
            notify: Arc::new(Notify::new()),
            requests_ready: Arc::clone(&requests_notify),
        };
        let requests = Requests {
            store: Arc::clone(&store),
            upstreams: Arc::clone(&upstreams),
            clock,
            lease: b.lease,
            retry: RetrySettings {
                max_attempts: b.max_attempts,
                base: b.retry_base,
                max: b.retry_max,
            },
            max_response_bytes: b.max_response_bytes,
            progress_interval: b.progress_interval,
            notify: requests_notify,
            in_flight: Mutex::new(HashMap::new()),
            pruned_at: std::sync::atomic::AtomicI64::new(0),
        };
        Ok(Self {
            validation: Runner::new(
                Arc::new(validation),
                RunnerConfig {
                    max_in_flight: 2,
                    idle_poll: b.idle_poll,
                    max_completion_batch: 16,
                },
            ),
            requests: Runner::new(
                Arc::new(requests),
                RunnerConfig {
                    max_in_flight: b.max_in_flight,
                    idle_poll: b.idle_poll,
                    max_completion_batch: b.max_in_flight.max(64),
                },
            ),
            store,
            upstreams,
        })
    }

    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.upstreams
    }

    /// Runs both kinds of work until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // The store's one notifier wakes both runners.
        let wake = self.store.batch_notifier();
        let (validation, requests) = (self.validation.kind().notifier(), self.requests.kind().notifier());
        let stop = shutdown.clone();
        let forward = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = wake.notified() => {
                        validation.notify_one();
                        requests.notify_one();
                    }
                }
            }
        });
        tokio::join!(
            Arc::clone(&self.validation).run(shutdown.clone()),
            Arc::clone(&self.requests).run(shutdown),
        );
        let _ = forward.await;
    }

    /// One step of each runner (tests): returns what was done (0: nothing
    /// is due at the current time).
    pub async fn run_once(&self) -> StoreResult<usize> {
        let validated = self.validation.run_once().await?;
        let executed = self.requests.run_once().await?;
        Ok(validated + executed)
    }
}
