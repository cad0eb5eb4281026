//! Batch requests, a kind of leased work: claim due requests of running
//! batches (fair between batches: least recently served first, a bounded
//! share each; bounded per upstream by its `max_concurrency`), send each
//! to its upstream with a stable `Idempotency-Key`, and persist the
//! results in batches. Between rounds, batches that are done, cancelled
//! with nothing in flight, or past their window are finished.
//!
//! Retry policy (written here once for both backends): 408, 429, 5xx and
//! connection failures are tried again after `retry_base × 2^(tries−1)`
//! (at most `retry_max`), or after `Retry-After` if that is longer (at
//! most an hour), until `max_attempts` tries; other answers are final.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::upstream::{Answer, Upstreams};
use crate::clock::SharedClock;
use crate::domain::batch::{RequestResult, result_line};
use crate::store::batches::{FinishStep, RequestClaim, RequestCompletion, RequestJob, RequestUpdate};
use crate::store::{Store, StoreResult};
use crate::work::WorkKind;

#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

/// The longest `Retry-After` honoured.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

pub struct Requests {
    pub(super) store: Arc<dyn Store>,
    pub(super) upstreams: Arc<Upstreams>,
    pub(super) clock: SharedClock,
    pub(super) lease: Duration,
    pub(super) retry: RetrySettings,
    pub(super) max_response_bytes: usize,
    /// `batch.progress` at most this often per batch; zero: never.
    pub(super) progress_interval: Duration,
    pub(super) notify: Arc<Notify>,
    /// Requests this node has in flight, per upstream.
    pub(super) in_flight: Mutex<HashMap<String, usize>>,
    /// When abandoned uploads were last pruned (ms; at most hourly).
    pub(super) pruned_at: std::sync::atomic::AtomicI64,
}

/// An upload unfinished this long was abandoned (its client or node is gone).
const ABANDONED_UPLOAD: Duration = Duration::from_secs(24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[async_trait]
impl WorkKind for Requests {
    type Job = RequestJob;
    type Outcome = RequestCompletion;

    fn name(&self) -> &'static str {
        "batch_requests"
    }

    async fn claim(&self, room: usize) -> StoreResult<Vec<RequestJob>> {
        let rooms: Vec<(String, usize)> = {
            let in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.upstreams
                .all()
                .iter()
                .map(|u| {
                    let busy = in_flight.get(&u.name).copied().unwrap_or(0);
                    (u.name.clone(), u.max_concurrency.saturating_sub(busy).min(room))
                })
                .collect()
        };
        let now = self.clock.now();
        let jobs = self
            .store
            .claim_requests(RequestClaim {
                now,
                lease_until: now.saturating_add(self.lease),
                room: rooms,
                limit: room,
                per_batch: (room / 4).max(16),
                max_batches: 64,
            })
            .await?;
        let mut in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in &jobs {
            *in_flight.entry(job.upstream.clone()).or_default() += 1;
        }
        Ok(jobs)
    }

    async fn execute(&self, job: RequestJob) -> RequestCompletion {
        let tries = job.attempts + 1;
        let update = match self.upstreams.get(&job.upstream) {
            None => done(
                &job,
                &RequestResult::Errored {
                    code: "upstream_not_configured".into(),
                    message: format!("upstream {:?} is no longer configured", job.upstream),
                },
            ),
            Some(upstream) => {
                let key = format!("{}-{}", job.batch_id, job.line);
                let answer = upstream
                    .send(&job.endpoint, job.body.clone(), &key, self.max_response_bytes)
                    .await;
                self.judge(&job, answer, tries)
            }
        };
        let mut in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = in_flight.get_mut(&job.upstream) {
            *count = count.saturating_sub(1);
        }
        RequestCompletion {
            batch_id: job.batch_id,
            line: job.line,
            token: job.token,
            update,
        }
    }

    async fn complete(&self, outcomes: Vec<RequestCompletion>) -> StoreResult<()> {
        let applied = self.store.complete_requests(outcomes).await?;
        let stale = applied.iter().filter(|applied| !**applied).count();
        if stale > 0 {
            tracing::debug!(stale, "batch request results arrived after their lease or batch ended");
        }
        Ok(())
    }

    async fn between_rounds(&self) -> StoreResult<usize> {
        let now = self.clock.now();
        let mut finished = 0;
        for (id, finish) in self.store.batches_to_finish(now).await? {
            // Step by step (each a bounded transaction) to the final status.
            while let Some(step) = self.store.finish_batch(id, finish, now).await? {
                if let FinishStep::Finished(batch) = step {
                    tracing::info!(batch = %batch.id, status = batch.status.as_str(), "batch finished");
                    finished += 1;
                    break;
                }
            }
        }
        let last = self.pruned_at.load(std::sync::atomic::Ordering::Relaxed);
        if now.as_millis() - last >= PRUNE_EVERY.as_millis() as i64 {
            self.pruned_at
                .store(now.as_millis(), std::sync::atomic::Ordering::Relaxed);
            let before = crate::domain::Timestamp::from_millis(now.as_millis() - ABANDONED_UPLOAD.as_millis() as i64);
            while !self.store.prune_abandoned_uploads(before).await?.is_done() {}
        }
        if !self.progress_interval.is_zero() {
            // Not counted as work done: progress alone never keeps a step going.
            self.store.publish_progress(now, self.progress_interval).await?;
        }
        Ok(finished)
    }

    fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }
}

fn done(job: &RequestJob, result: &RequestResult) -> RequestUpdate {
    RequestUpdate::Done {
        line_bytes: result_line(&job.custom_id, result),
        failed: !result.is_success(),
    }
}

impl Requests {
    fn judge(&self, job: &RequestJob, answer: Answer, tries: u32) -> RequestUpdate {
        let now = self.clock.now();
        let can_retry = tries < self.retry.max_attempts;
        match answer {
            Answer::Status {
                code,
                request_id,
                retry_after,
                body,
            } => {
                let request_id = request_id.unwrap_or_else(|| format!("req_{}-{}", job.batch_id, job.line));
                if (200..300).contains(&code) {
                    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
                        return done(
                            job,
                            &RequestResult::Errored {
                                code: "invalid_upstream_response".into(),
                                message: format!("the upstream answered {code} with a body that is not JSON"),
                            },
                        );
                    }
                    return done(
                        job,
                        &RequestResult::Succeeded {
                            status_code: code,
                            request_id,
                            body,
                        },
                    );
                }
                let retryable = code == 408 || code == 429 || code >= 500;
                if retryable && can_retry {
                    let asked = retry_after.map_or(Duration::ZERO, |r| r.delay_from(now).min(RETRY_AFTER_MAX));
                    return RequestUpdate::Retry {
                        at: now.saturating_add(self.backoff(tries).max(asked)),
                    };
                }
                done(
                    job,
                    &RequestResult::Refused {
                        status_code: code,
                        request_id,
                        body,
                    },
                )
            }
            Answer::Failed { code, message } => {
                if code != "response_too_large" && code != "invalid_request" && can_retry {
                    return RequestUpdate::Retry {
                        at: now.saturating_add(self.backoff(tries)),
                    };
                }
                done(
                    job,
                    &RequestResult::Errored {
                        code: code.into(),
                        message,
                    },
                )
            }
        }
    }

    fn backoff(&self, tries: u32) -> Duration {
        let factor = 2u32.saturating_pow(tries.saturating_sub(1).min(20));
        self.retry.base.saturating_mul(factor).min(self.retry.max)
    }
}
