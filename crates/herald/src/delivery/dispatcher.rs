//! The dispatcher: keeps up to `max_in_flight` attempts running, at most
//! `max_in_flight_per_endpoint` per webhook, so a slow or dead endpoint
//! occupies only its own share and never delays healthy ones.
//!
//! Loop: claim as many due deliveries as there is room for (the claim skips
//! webhooks at their cap), start one task per attempt, then sleep until new
//! work is published, room frees up, the next known due time, or the idle
//! poll (a backstop). Completions are batched into one store write each.
//!
//! Failure policy: a failed claim is retried after a pause; a completion
//! that cannot be written is retried until shutdown; if the process dies
//! instead, the leases expire and the deliveries are attempted again
//! (at-least-once, never lost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::{AttemptContext, EndpointSigner, attempt, signer_for};
use super::client::DeliveryClient;
use super::retry::{Jitter, RetryPolicy};
use crate::clock::SharedClock;
use crate::domain::{DeliveryId, Timestamp, WebhookId};
use crate::store::{ClaimRequest, Completion, CompletionResult, DeliveryJob, LeaseToken, NextStep, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: u32,
    /// How long a claimed delivery stays ours before others may take it.
    pub lease: Duration,
    /// The longest sleep between claims when nothing wakes the loop.
    pub idle_poll: Duration,
    /// How long shutdown waits for in-flight attempts before releasing them.
    pub shutdown_grace: Duration,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    policy: RetryPolicy,
    clock: SharedClock,
    jitter: Arc<dyn Jitter>,
    config: DispatcherConfig,
    /// What this dispatcher has claimed and not yet completed.
    in_flight: Mutex<InFlight>,
    /// Notified by the store when new work may be due.
    work: Arc<Notify>,
    /// Notified when completions free room under the caps.
    room: Notify,
}

#[derive(Default)]
struct InFlight {
    per_endpoint: HashMap<WebhookId, u32>,
    leases: HashMap<DeliveryId, (WebhookId, LeaseToken)>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: DeliveryClient,
        policy: RetryPolicy,
        clock: SharedClock,
        jitter: Arc<dyn Jitter>,
        config: DispatcherConfig,
    ) -> Arc<Self> {
        let work = store.work_notifier();
        Arc::new(Self {
            store,
            client,
            policy,
            clock,
            jitter,
            config,
            in_flight: Mutex::new(InFlight::default()),
            work,
            room: Notify::new(),
        })
    }

    /// Claims what is due now, attempts it all, records the outcomes, and
    /// returns how many attempts were made. Tests call this instead of
    /// running the loop, so they control every step.
    pub async fn run_once(&self) -> StoreResult<usize> {
        let (jobs, _) = self.claim().await?;
        let signers = signers(&jobs);
        let context = self.context();
        let completions = join_all(jobs.iter().map(|job| attempt(&context, job, &signers[&job.endpoint.webhook_id]))).await;
        self.persist(&completions).await?;
        Ok(completions.len())
    }

    /// Runs until `shutdown` is cancelled, then lets in-flight attempts
    /// finish within the grace period and returns the rest to the queue.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (done, finished) = mpsc::unbounded_channel();
        let completer = tokio::spawn(Arc::clone(&self).complete_loop(finished));
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            let pause = match self.claim().await {
                Ok((jobs, next_due)) => {
                    let signers = signers(&jobs);
                    for job in jobs {
                        let signer = Arc::clone(&signers[&job.endpoint.webhook_id]);
                        let (dispatcher, done) = (Arc::clone(&self), done.clone());
                        tasks.spawn(async move {
                            let completion = attempt(&dispatcher.context(), &job, &signer).await;
                            let _ = done.send(completion);
                        });
                    }
                    self.pause_until(next_due)
                }
                Err(error) => {
                    tracing::error!(%error, "claiming deliveries failed; retrying in 1s");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.work.notified() => {}
                () = self.room.notified() => {}
                () = tokio::time::sleep(pause) => {}
                Some(_) = tasks.join_next() => {}
            }
        }
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(still_running = tasks.len(), "shutdown grace period over; abandoning attempts");
            tasks.shutdown().await;
        }
        drop(done);
        let _ = completer.await;
        self.release_abandoned().await;
    }

    fn context(&self) -> AttemptContext<'_> {
        AttemptContext { client: &self.client, policy: &self.policy, clock: self.clock.as_ref(), jitter: self.jitter.as_ref() }
    }

    /// How long to wait before claiming again if nothing wakes us.
    fn pause_until(&self, next_due: Option<Timestamp>) -> Duration {
        let room = self.room_left() > 0;
        match next_due {
            Some(due) if room => due.duration_since(self.clock.now()).min(self.config.idle_poll),
            _ => self.config.idle_poll,
        }
    }

    fn room_left(&self) -> usize {
        let total = self.in_flight.lock().map_or(usize::MAX, |state| state.leases.len());
        self.config.max_in_flight.saturating_sub(total)
    }

    /// Claims as much as the caps allow and records it as in flight.
    async fn claim(&self) -> StoreResult<(Vec<DeliveryJob>, Option<Timestamp>)> {
        let limit = self.room_left();
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        let now = self.clock.now();
        let in_flight = match self.in_flight.lock() {
            Ok(state) => state.per_endpoint.iter().map(|(id, count)| (*id, *count)).collect(),
            Err(_) => Vec::new(),
        };
        let request = ClaimRequest {
            now,
            lease_until: now.saturating_add(self.config.lease),
            limit,
            per_endpoint_limit: self.config.max_in_flight_per_endpoint,
            in_flight,
        };
        let batch = self.store.claim(request).await?;
        if let Ok(mut state) = self.in_flight.lock() {
            for job in &batch.jobs {
                *state.per_endpoint.entry(job.endpoint.webhook_id).or_default() += 1;
                state.leases.insert(job.delivery_id, (job.endpoint.webhook_id, job.lease));
            }
        }
        metrics::counter!("herald_deliveries_claimed_total").increment(batch.jobs.len() as u64);
        Ok((batch.jobs, batch.next_due))
    }

    /// Batches completions into store writes until every sender is gone.
    async fn complete_loop(self: Arc<Self>, mut finished: mpsc::UnboundedReceiver<Completion>) {
        let mut batch = Vec::new();
        while let Some(first) = finished.recv().await {
            batch.push(first);
            while batch.len() < 1024 {
                match finished.try_recv() {
                    Ok(completion) => batch.push(completion),
                    Err(_) => break,
                }
            }
            let mut pause = Duration::from_millis(50);
            while let Err(error) = self.persist(&batch).await {
                tracing::error!(%error, "recording attempt outcomes failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            batch.clear();
        }
    }

    /// Writes outcomes, then frees their room under the caps.
    async fn persist(&self, completions: &[Completion]) -> StoreResult<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let results = self.store.complete(completions.to_vec()).await?;
        if let Ok(mut state) = self.in_flight.lock() {
            for completion in completions {
                state.finish(completion.delivery_id);
            }
        }
        for (completion, result) in completions.iter().zip(results) {
            let label = match (result, completion.next) {
                (CompletionResult::Stale, _) => "stale",
                (_, NextStep::Succeeded) => "succeeded",
                (_, NextStep::RetryAt(_)) => "retrying",
                (_, NextStep::Failed) => "failed",
            };
            metrics::counter!("herald_delivery_outcomes_total", "outcome" => label).increment(1);
        }
        self.room.notify_one();
        Ok(())
    }

    /// Returns deliveries whose attempts were abandoned at shutdown to the
    /// queue, due at once, so the next start (or another node) sends them.
    async fn release_abandoned(&self) {
        let leases: Vec<(DeliveryId, LeaseToken)> = match self.in_flight.lock() {
            Ok(mut state) => state.leases.drain().map(|(id, (_, token))| (id, token)).collect(),
            Err(_) => Vec::new(),
        };
        if leases.is_empty() {
            return;
        }
        let count = leases.len();
        match self.store.release(leases, self.clock.now()).await {
            Ok(()) => tracing::info!(count, "released unfinished deliveries for the next start"),
            Err(error) => tracing::warn!(%error, count, "could not release leases; they will expire instead"),
        }
    }
}

impl InFlight {
    fn finish(&mut self, delivery: DeliveryId) {
        let Some((webhook, _)) = self.leases.remove(&delivery) else { return };
        if let Some(count) = self.per_endpoint.get_mut(&webhook) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_endpoint.remove(&webhook);
            }
        }
    }
}

/// One signer per endpoint in a claim: keys are parsed once per batch.
fn signers(jobs: &[DeliveryJob]) -> HashMap<WebhookId, EndpointSigner> {
    let mut signers = HashMap::new();
    for job in jobs {
        signers.entry(job.endpoint.webhook_id).or_insert_with(|| signer_for(&job.endpoint));
    }
    signers
}
