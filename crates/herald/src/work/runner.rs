//! The loop every [`WorkKind`] runs in.
//!
//! Failure policy: a failed claim is retried after `idle_poll`; a failed
//! completion is retried a few times and then dropped, leaving its leases
//! to expire (the job runs again: a duplicate, never a loss). A job that
//! panics loses its outcome the same way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::WorkKind;

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs running at once at most.
    pub max_in_flight: usize,
    /// Longest pause between two claims when nothing wakes the runner.
    pub idle_poll: Duration,
    /// Outcomes persisted in one completion at most.
    pub max_completion_batch: usize,
}

pub struct Runner<K: WorkKind> {
    kind: Arc<K>,
    config: RunnerConfig,
}

/// Longest wait for more outcomes before completing those in hand.
const GATHER: Duration = Duration::from_millis(2);

/// Tries of one completion before its outcomes are left to lease expiry.
const COMPLETE_TRIES: u32 = 3;

impl<K: WorkKind> Runner<K> {
    pub fn new(kind: Arc<K>, config: RunnerConfig) -> Arc<Self> {
        Arc::new(Self { kind, config })
    }

    pub fn kind(&self) -> &Arc<K> {
        &self.kind
    }

    /// Runs until `shutdown`, then waits for the jobs in flight and
    /// persists their outcomes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let (done, mut outcomes) = mpsc::unbounded_channel::<K::Outcome>();
        let mut tasks = JoinSet::new();
        let notify = self.kind.notifier();
        let mut pending = Vec::new();
        while !shutdown.is_cancelled() {
            if let Err(error) = self.kind.between_rounds().await {
                tracing::warn!(kind = self.kind.name(), %error, "leased work: housekeeping failed; retrying");
            }
            let room = self.config.max_in_flight.saturating_sub(tasks.len());
            let mut claimed = 0;
            if room > 0 {
                match self.kind.claim(room).await {
                    Ok(jobs) => {
                        claimed = jobs.len();
                        for job in jobs {
                            let (kind, done) = (Arc::clone(&self.kind), done.clone());
                            tasks.spawn(async move {
                                let _ = done.send(kind.execute(job).await);
                            });
                        }
                    }
                    Err(error) => tracing::warn!(kind = self.kind.name(), %error, "leased work: claim failed"),
                }
            }
            // A full room claimed: more may be due, claim again as soon as
            // a job ends; otherwise wait for a wake-up or the idle poll.
            let saturated = claimed > 0 && claimed == room;
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = notify.notified() => {}
                Some(outcome) = outcomes.recv() => pending.push(outcome),
                () = tokio::time::sleep(self.config.idle_poll), if !saturated => {}
            }
            while tasks.try_join_next().is_some() {}
            // Gather the outcomes arriving together (fast jobs end within
            // microseconds of each other) into one completion: one commit.
            let gather_until = tokio::time::Instant::now() + GATHER;
            while pending.len() < self.config.max_completion_batch && !pending.is_empty() {
                match outcomes.try_recv() {
                    Ok(outcome) => pending.push(outcome),
                    Err(_) if tasks.is_empty() || tokio::time::Instant::now() >= gather_until => break,
                    Err(_) => match tokio::time::timeout_at(gather_until, outcomes.recv()).await {
                        Ok(Some(outcome)) => pending.push(outcome),
                        _ => break,
                    },
                }
                while tasks.try_join_next().is_some() {}
            }
            if !pending.is_empty() {
                self.complete(std::mem::take(&mut pending)).await;
            }
        }
        while tasks.join_next().await.is_some() {}
        drop(done);
        while let Some(outcome) = outcomes.recv().await {
            pending.push(outcome);
        }
        if !pending.is_empty() {
            self.complete(pending).await;
        }
    }

    async fn complete(&self, outcomes: Vec<K::Outcome>) {
        for attempt in 1..=COMPLETE_TRIES {
            match self.kind.complete(outcomes.clone()).await {
                Ok(()) => return,
                Err(error) if attempt == COMPLETE_TRIES => {
                    tracing::error!(kind = self.kind.name(), %error, "leased work: completion failed; its leases will expire and the jobs run again");
                }
                Err(error) => {
                    tracing::warn!(kind = self.kind.name(), %error, "leased work: completion failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        }
    }

    /// One step for tests: housekeeping, one claim of up to
    /// `max_in_flight` jobs, all of them executed, their outcomes
    /// completed, housekeeping again. Returns the jobs run plus the
    /// housekeeping changes (0: nothing to do at this time).
    pub async fn run_once(&self) -> crate::store::StoreResult<usize> {
        let mut changed = self.kind.between_rounds().await?;
        let jobs = self.kind.claim(self.config.max_in_flight).await?;
        let count = jobs.len();
        let mut tasks = JoinSet::new();
        for job in jobs {
            let kind = Arc::clone(&self.kind);
            tasks.spawn(async move { kind.execute(job).await });
        }
        let mut outcomes = Vec::with_capacity(count);
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
        if !outcomes.is_empty() {
            self.kind.complete(outcomes).await?;
        }
        changed += self.kind.between_rounds().await?;
        Ok(count + changed)
    }
}
