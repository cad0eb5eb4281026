//! The dispatcher: keeps up to `max_in_flight` deliveries claimed and at
//! most `max_in_flight_per_endpoint` HTTP requests open per webhook, so a
//! slow or dead endpoint occupies only its own share and never delays
//! healthy ones.
//!
//! Loop: claim as many due deliveries as there is room for, start them,
//! then sleep until new work is published, room frees up, the next known
//! due time, or the idle poll (a backstop).
//!
//! Prefetch: a claim may take up to twice a healthy endpoint's cap. Jobs
//! beyond the cap wait, leased, in that endpoint's local queue, and the task
//! that finishes a request takes the next one at once: per-endpoint
//! throughput does not wait for a store round trip per request. Leases are
//! longer than this wait (the configuration requires lease > 2 × timeout).
//!
//! Adaptive caps: an endpoint that times out, fails slowly (a failure
//! taking a second or more), or answers 429/502/503/504 has its cap halved
//! (down to 1) and gets no prefetch; each 2xx raises the cap by one, back
//! to the configured maximum. Fast failures (a refused connection) hold a
//! slot for microseconds and leave the cap alone. No endpoint holds more than an eighth of
//! `max_in_flight`. So slow endpoints, even many with deep backlogs, settle
//! at one request each within a timeout or two, and leave the rest of the
//! budget to healthy ones.
//!
//! Failure policy: a failed claim is retried after a pause; a completion
//! that cannot be written is retried until shutdown; if the process dies
//! instead, the leases expire and the deliveries are attempted again
//! (at-least-once, never lost).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::{AttemptContext, EndpointSigner, attempt, job_format, signer_for};
use super::client::DeliveryClient;
use super::failure_log::FailureLog;
use super::retry::{Jitter, RetryPolicy};
use crate::clock::SharedClock;
use crate::domain::delivery::reason;
use crate::domain::health::HealthPolicy;
use crate::domain::{AttemptRecord, DeliveryId, Timestamp, WebhookId};
use crate::server_keys::ServerKeys;
use crate::store::{
    ClaimRequest, Completion, CompletionResult, DeliveryJob, LeaseToken, NextStep, Release, Store, StoreResult,
};

/// On a shared store, how long a wake-up waits for others to claim with.
const SHARED_CLAIM_COALESCE: Duration = Duration::from_millis(2);

/// The least pause after a claim that found nothing although work was due.
const EMPTY_CLAIM_PAUSE: Duration = Duration::from_millis(5);

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
    /// Scheduled attempts count toward endpoint health under this rule.
    pub health: HealthPolicy,
}

pub struct Dispatcher {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    policy: RetryPolicy,
    clock: SharedClock,
    jitter: Arc<dyn Jitter>,
    config: DispatcherConfig,
    in_flight: Mutex<InFlight>,
    /// Notified by the store when new work may be due.
    work: Arc<Notify>,
    /// Notified when room frees up under either limit.
    room: Notify,
    /// Failed attempts logged at `warn`, rate-limited per webhook.
    failures: FailureLog,
    /// Herald's own keys, for per-job webhooks (this node's cache).
    server_keys: ServerKeys,
}

/// What this dispatcher holds. Three views of the same deliveries:
/// `leases`: claimed and not yet recorded (bounded by `max_in_flight`);
/// `requests`: HTTP exchanges open per webhook (bounded by its cap);
/// `waiting`: claimed, leased, queued behind that cap. And `caps`: the
/// current cap of endpoints below the configured maximum.
#[derive(Default)]
struct InFlight {
    leases: HashMap<DeliveryId, Held>,
    requests: HashMap<WebhookId, u32>,
    waiting: HashMap<WebhookId, VecDeque<(DeliveryJob, EndpointSigner)>>,
    caps: HashMap<WebhookId, u32>,
}

/// A lease this dispatcher holds, and whether its request has been sent.
#[derive(Debug, Clone, Copy)]
struct Held {
    lease: LeaseToken,
    started: Option<Started>,
}

/// When an attempt's request went out: what a cut-off attempt records.
#[derive(Debug, Clone, Copy)]
struct Started {
    number: u32,
    at: Timestamp,
    /// Monotonic, for the duration (tokio's clock: paused in tests).
    since: tokio::time::Instant,
}

/// Where finished attempts go to be recorded.
type Outcomes = mpsc::UnboundedSender<Completion>;

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
        let server_keys = ServerKeys::new(Arc::clone(&store), Arc::clone(&clock));
        Arc::new(Self {
            server_keys,
            store,
            client,
            policy,
            clock,
            jitter,
            config,
            in_flight: Mutex::new(InFlight::default()),
            work,
            room: Notify::new(),
            failures: FailureLog::default(),
        })
    }

    /// One step of the production loop, for tests: claims what is due now
    /// (with the same prefetch, caps and expiry as [`Dispatcher::run`]),
    /// attempts it all through the same tasks, records every outcome
    /// through the same completion path (with its failure policy), and
    /// returns how many attempts it made (expired deliveries make none).
    pub async fn run_once(self: &Arc<Self>) -> StoreResult<usize> {
        let (outcomes, finished) = mpsc::unbounded_channel();
        let completer = tokio::spawn(Arc::clone(self).complete_loop(finished));
        let mut tasks = JoinSet::new();
        let claimed = self.claim().await;
        let taken = match claimed {
            Ok((jobs, _)) => {
                let taken = jobs.len();
                let expired = self.start(jobs, &mut tasks, &outcomes).await;
                Ok(taken - expired)
            }
            Err(error) => Err(error),
        };
        while tasks.join_next().await.is_some() {}
        drop(outcomes);
        let _ = completer.await;
        taken
    }

    /// Runs until `shutdown` is cancelled, then lets in-flight attempts
    /// finish within the grace period and returns the rest to the queue.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (outcomes, finished) = mpsc::unbounded_channel();
        let completer = tokio::spawn(Arc::clone(&self).complete_loop(finished));
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            let pause = match self.claim().await {
                Ok((jobs, next_due)) => {
                    let claimed = !jobs.is_empty();
                    let _ = self.start(jobs, &mut tasks, &outcomes).await;
                    let pause = self.pause_until(next_due);
                    // Work is due but none could be taken (another node holds
                    // it, or a race): do not spin on empty claims.
                    if claimed { pause } else { pause.max(EMPTY_CLAIM_PAUSE) }
                }
                Err(error) => {
                    tracing::error!(%error, "claiming deliveries failed; retrying in 1s");
                    Duration::from_secs(1)
                }
            };
            // Finished tasks stay in the set until joined: reap them all.
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.work.notified() => {}
                () = self.room.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
            // On a shared store a claim is a network transaction of about
            // ten statements: let wake-ups that arrive together share one.
            if self.store.is_shared() && !shutdown.is_cancelled() {
                tokio::time::sleep(SHARED_CLAIM_COALESCE).await;
            }
        }
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                still_running = tasks.len(),
                "shutdown grace period over; abandoning attempts"
            );
            tasks.shutdown().await;
        }
        drop(outcomes);
        let _ = completer.await;
        self.release_abandoned().await;
    }

    /// Starts each job now if its endpoint has a free request slot, or
    /// queues it behind the cap.
    /// Returns how many were failed as expired instead.
    async fn start(self: &Arc<Self>, jobs: Vec<DeliveryJob>, tasks: &mut JoinSet<()>, outcomes: &Outcomes) -> usize {
        let signers = signers(&jobs, &self.server_keys).await;
        let now = self.clock.now();
        let mut expired_jobs = 0;
        for job in jobs {
            if self.window_closed(&job, now) {
                let _ = outcomes.send(expired(&job, now, self.config.health));
                expired_jobs += 1;
                continue;
            }
            let webhook = job.endpoint.webhook_id;
            let signer = Arc::clone(&signers[&webhook]);
            let Ok(mut state) = self.in_flight.lock() else {
                return expired_jobs;
            };
            let cap = state.cap(webhook, self.config.max_in_flight_per_endpoint);
            let open = state.requests.entry(webhook).or_default();
            if *open < cap {
                *open += 1;
                drop(state);
                tasks.spawn(Arc::clone(self).attempt_loop(job, signer, outcomes.clone()));
            } else {
                state.waiting.entry(webhook).or_default().push_back((job, signer));
            }
        }
        expired_jobs
    }

    /// Attempts `job`, then keeps taking its endpoint's queued jobs until
    /// none is left, holding one request slot throughout.
    async fn attempt_loop(self: Arc<Self>, mut job: DeliveryJob, mut signer: EndpointSigner, outcomes: Outcomes) {
        use futures_util::FutureExt;
        loop {
            let webhook = job.endpoint.webhook_id;
            if let Ok(mut state) = self.in_flight.lock() {
                state.mark_started(job.delivery_id, job.attempt_number, self.clock.now());
            }
            // A bug in one attempt must not leak its slot: the delivery is
            // dropped locally and its lease left to expire (then retried).
            let attempted = std::panic::AssertUnwindSafe(attempt(&self.context(), &job, &signer))
                .catch_unwind()
                .await;
            let health = match attempted {
                Ok(mut completion) => {
                    completion.health = Some(self.config.health);
                    let health = Health::of(&completion);
                    self.failures.note(&completion);
                    let _ = outcomes.send(completion);
                    health
                }
                Err(_) => {
                    tracing::error!(delivery = %job.delivery_id, "an attempt panicked; its lease will expire and it will be retried");
                    if let Ok(mut state) = self.in_flight.lock() {
                        state.leases.remove(&job.delivery_id);
                    }
                    Health::Neutral
                }
            };
            let next = match self.in_flight.lock() {
                Ok(mut state) => {
                    state.adjust_cap(webhook, health, self.config.max_in_flight_per_endpoint);
                    state.next_or_release(webhook, self.config.max_in_flight_per_endpoint)
                }
                Err(_) => None,
            };
            self.room.notify_one();
            match next {
                Some((next_job, next_signer)) => (job, signer) = (next_job, next_signer),
                None => return,
            }
        }
    }

    fn context(&self) -> AttemptContext<'_> {
        AttemptContext {
            client: &self.client,
            policy: &self.policy,
            clock: self.clock.as_ref(),
            jitter: self.jitter.as_ref(),
        }
    }

    /// How long to wait before claiming again if nothing wakes us.
    fn pause_until(&self, next_due: Option<Timestamp>) -> Duration {
        match next_due {
            Some(due) if self.room_left() > 0 => due.duration_since(self.clock.now()).min(self.config.idle_poll),
            _ => self.config.idle_poll,
        }
    }

    fn room_left(&self) -> usize {
        let held = self.in_flight.lock().map_or(usize::MAX, |state| state.leases.len());
        self.config.max_in_flight.saturating_sub(held)
    }

    /// Whether `job`'s retry window has closed: the policy never schedules
    /// past `max_age`, and a lease's length more covers an attempt
    /// scheduled at the very end of the window. Only deliveries held while
    /// their webhook was disabled, or that lost a lease at the window's
    /// end, get here; they are failed as `expired` without an attempt.
    fn window_closed(&self, job: &DeliveryJob, now: Timestamp) -> bool {
        let window = self.policy.max_age.saturating_add(self.config.lease);
        job.event_time.saturating_add(window) < now
    }

    /// Claims as much as the limits allow (each webhook up to its window,
    /// counting what it has open or queued) and records it.
    async fn claim(&self) -> StoreResult<(Vec<DeliveryJob>, Option<Timestamp>)> {
        let limit = self.room_left();
        if limit == 0 {
            return Ok((Vec::new(), None));
        }
        let now = self.clock.now();
        // Prefetch past the cap only when no other node's requests count
        // against it: on a shared store the cap is held across nodes by
        // counting leases, so a lease must mean a request slot.
        let shared = self.store.is_shared();
        let windows = Windows {
            max_cap: self.config.max_in_flight_per_endpoint,
            prefetch: !shared,
            ceiling: u32::try_from(self.config.max_in_flight / 8).unwrap_or(u32::MAX).max(1),
        };
        let room = match self.in_flight.lock() {
            Ok(state) => state.room(&windows),
            Err(_) => Vec::new(),
        };
        let request = ClaimRequest {
            now,
            lease_until: now.saturating_add(self.config.lease),
            limit,
            default_room: windows.of(windows.max_cap),
            room,
            max_leased_per_webhook: windows.of(windows.max_cap),
        };
        let batch = self.store.claim(request).await?;
        if let Ok(mut state) = self.in_flight.lock() {
            state.leases.extend(batch.jobs.iter().map(|job| {
                (
                    job.delivery_id,
                    Held {
                        lease: job.lease,
                        started: None,
                    },
                )
            }));
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
            self.persist_or_give_up(&batch).await;
            batch.clear();
        }
    }

    /// Failure policy for recording outcomes: retry the batch with backoff
    /// (about 30 s); then record one by one, so one bad outcome cannot hold
    /// the others back; an outcome that still cannot be written is dropped
    /// here and its lease left to expire, so the delivery is attempted again
    /// (a duplicate, never a loss).
    async fn persist_or_give_up(&self, batch: &[Completion]) {
        if self.persist_with_retries(batch, 8).await {
            return;
        }
        for completion in batch {
            if !self.persist_with_retries(std::slice::from_ref(completion), 3).await {
                tracing::error!(delivery = %completion.delivery_id, "cannot record an attempt's outcome; the delivery will be retried when its lease expires");
                if let Ok(mut state) = self.in_flight.lock() {
                    state.leases.remove(&completion.delivery_id);
                }
                self.room.notify_one();
            }
        }
    }

    async fn persist_with_retries(&self, completions: &[Completion], tries: u32) -> bool {
        let mut pause = Duration::from_millis(50);
        for attempt in 1..=tries {
            match self.persist(completions).await {
                Ok(()) => return true,
                Err(error) => {
                    tracing::error!(%error, attempt, "recording attempt outcomes failed");
                    if attempt < tries {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(8));
                    }
                }
            }
        }
        false
    }

    /// Writes outcomes, then frees their leases.
    async fn persist(&self, completions: &[Completion]) -> StoreResult<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let results = self.store.complete(completions.to_vec()).await?;
        if let Ok(mut state) = self.in_flight.lock() {
            for completion in completions {
                state.leases.remove(&completion.delivery_id);
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

    /// Returns deliveries whose attempts were abandoned at shutdown (open
    /// or still queued) to the queue, due at once, so the next start (or
    /// another node) sends them.
    async fn release_abandoned(&self) {
        let leases: Vec<Release> = match self.in_flight.lock() {
            Ok(mut state) => {
                state.waiting.clear();
                state.requests.clear();
                let held = state.leases.drain();
                held.map(|(delivery_id, held)| Release {
                    delivery_id,
                    lease: held.lease,
                    interrupted: held.started.map(|started| {
                        AttemptRecord::cut_off_at_shutdown(started.number, started.at, started.since.elapsed())
                    }),
                })
                .collect()
            }
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
    fn mark_started(&mut self, delivery: DeliveryId, number: u32, at: Timestamp) {
        if let Some(held) = self.leases.get_mut(&delivery) {
            held.started = Some(Started {
                number,
                at,
                since: tokio::time::Instant::now(),
            });
        }
    }

    fn cap(&self, webhook: WebhookId, max_cap: u32) -> u32 {
        self.caps.get(&webhook).copied().unwrap_or(max_cap)
    }

    /// How many more each busy or degraded webhook may be given.
    fn room(&self, windows: &Windows) -> Vec<(WebhookId, u32)> {
        let mut busy: HashMap<WebhookId, u32> = self.requests.clone();
        for (webhook, queued) in &self.waiting {
            *busy.entry(*webhook).or_default() += u32::try_from(queued.len()).unwrap_or(u32::MAX);
        }
        for webhook in self.caps.keys() {
            busy.entry(*webhook).or_default();
        }
        busy.into_iter()
            .map(|(webhook, held)| {
                let window = windows.of(self.cap(webhook, windows.max_cap));
                (webhook, window.saturating_sub(held))
            })
            .collect()
    }

    /// Halves the cap after a sign of overload, raises it by one after a success.
    fn adjust_cap(&mut self, webhook: WebhookId, health: Health, max_cap: u32) {
        let cap = self.cap(webhook, max_cap);
        let new_cap = match health {
            Health::Overloaded => (cap / 2).max(1),
            Health::Good => (cap + 1).min(max_cap),
            Health::Neutral => cap,
        };
        if new_cap == cap {
            return;
        }
        if new_cap < cap {
            tracing::debug!(%webhook, cap = new_cap, "endpoint struggling: fewer concurrent requests");
        }
        if new_cap >= max_cap {
            self.caps.remove(&webhook);
        } else {
            self.caps.insert(webhook, new_cap);
        }
    }

    /// The endpoint's next queued job (keeping the request slot), or frees
    /// the slot: when nothing waits, or when the endpoint has more requests
    /// open than its (lowered) cap.
    fn next_or_release(&mut self, webhook: WebhookId, max_cap: u32) -> Option<(DeliveryJob, EndpointSigner)> {
        let over_cap = self.requests.get(&webhook).copied().unwrap_or(0) > self.cap(webhook, max_cap);
        if !over_cap && let Some(queue) = self.waiting.get_mut(&webhook) {
            let next = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&webhook);
            }
            if next.is_some() {
                return next;
            }
        }
        self.request_done(webhook);
        None
    }

    fn request_done(&mut self, webhook: WebhookId) {
        if let Some(open) = self.requests.get_mut(&webhook) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                self.requests.remove(&webhook);
            }
        }
    }
}

/// How many deliveries a webhook may hold (open plus queued).
struct Windows {
    max_cap: u32,
    /// Whether a healthy endpoint (at its full cap) may hold twice its cap,
    /// the rest queued locally.
    prefetch: bool,
    /// No webhook holds more than this share of `max_in_flight`.
    ceiling: u32,
}

impl Windows {
    fn of(&self, cap: u32) -> u32 {
        let window = if self.prefetch && cap >= self.max_cap {
            cap.saturating_mul(2)
        } else {
            cap
        };
        window.min(self.ceiling).max(1)
    }
}

/// What one outcome says about the endpoint's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Good,
    /// Slow or throttling: timeouts, slow failures, 429/502/503/504.
    Overloaded,
    /// Says nothing about load (a 4xx, a fast 500, a signing problem).
    Neutral,
}

impl Health {
    /// A failure that took this long held a request slot for it: a sign
    /// the endpoint is slow, not merely refusing.
    const SLOW_FAILURE: Duration = Duration::from_secs(1);

    fn of(completion: &Completion) -> Self {
        use crate::domain::AttemptErrorKind as Kind;
        let Some(attempt) = &completion.attempt else {
            return Self::Neutral;
        };
        match (attempt.status_code, attempt.error_kind) {
            (Some(200..=299), _) => Self::Good,
            (Some(429 | 502 | 503 | 504), _) => Self::Overloaded,
            (None, Some(Kind::Timeout)) => Self::Overloaded,
            (None, Some(_)) if attempt.duration >= Self::SLOW_FAILURE => Self::Overloaded,
            _ => Self::Neutral,
        }
    }
}

/// One signer per endpoint in a claim: keys are parsed once per batch.
/// Herald's own keys are read (from this node's cache) only when a job's
/// webhook is in the batch; if they cannot be, those attempts fail as
/// signing errors and are retried like any failure.
async fn signers(jobs: &[DeliveryJob], server_keys: &ServerKeys) -> HashMap<WebhookId, EndpointSigner> {
    let keyring = if jobs.iter().any(|job| job_format(&job.endpoint).is_some()) {
        match server_keys.keyring().await {
            Ok(keyring) => Some(keyring),
            Err(error) => {
                tracing::warn!(%error, "cannot load Herald's signing keys for per-job webhooks");
                None
            }
        }
    } else {
        None
    };
    let mut signers = HashMap::new();
    for job in jobs {
        signers
            .entry(job.endpoint.webhook_id)
            .or_insert_with(|| signer_for(&job.endpoint, keyring.as_deref()));
    }
    signers
}

/// The outcome of a delivery whose window closed before it could be sent.
fn expired(job: &DeliveryJob, now: Timestamp, health: HealthPolicy) -> Completion {
    Completion {
        delivery_id: job.delivery_id,
        webhook_id: job.endpoint.webhook_id,
        lease: job.lease,
        attempt: None,
        next: NextStep::Failed,
        last_error: Some(reason::EXPIRED.into()),
        disable_webhook: None,
        now,
        health: Some(health),
    }
}
