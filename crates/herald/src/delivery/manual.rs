//! Attempts outside the schedule, asked for through the API: a redelivery
//! of an existing delivery and a ping (a `webhook.ping` event sent to one
//! webhook). Each leases its delivery (so it is fenced and, if the process
//! dies mid-attempt, recovered as `interrupted`), makes one attempt with the
//! same sign → send → judge as the dispatcher, and completes it through
//! [`crate::store::DeliveryQueue::complete`]. Neither is ever retried.
//!
//! What a redelivery does to its delivery ([`after_redelivery`]): a pending
//! delivery keeps its schedule (due time, last error) whatever the outcome;
//! a failed delivery that is redelivered successfully becomes `succeeded`;
//! otherwise only the log changes. A manual attempt takes the next attempt
//! number, so the attempt count (which the retry policy steps by) includes
//! it. A `410` from a manual attempt does not disable the webhook.

use std::sync::Arc;
use std::time::Duration;

use super::attempt::{AttemptContext, attempt, job_format, signer_for};
use super::client::DeliveryClient;
use super::retry::{FixedJitter, RetryPolicy};
use crate::clock::SharedClock;
use crate::domain::{AttemptRecord, DeliveryId, DeliveryState, EventId, EventType, ProjectId, Timestamp, WebhookId};
use crate::store::{
    Completion, DeliveryJob, DeliverySummary, ManualLease, ManualLeaseRequest, NewEvent, NextStep, PingRequest, Store,
    StoreError,
};

/// The event type a ping sends.
pub const PING_EVENT_TYPE: &str = "webhook.ping";

#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    #[error("no such delivery")]
    NotFound,
    #[error("an attempt of this delivery is in flight; retry when it has finished")]
    InFlight,
    #[error("the delivery's webhook was deleted")]
    WebhookDeleted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A ping's event, delivery and the outcome of its one attempt.
#[derive(Debug, Clone)]
pub struct PingOutcome {
    pub event_id: EventId,
    pub delivery_id: DeliveryId,
    pub attempt: AttemptRecord,
}

/// Makes manual attempts; shares the dispatcher's client (and its
/// connection pool and SSRF guard) but none of its state.
pub struct ManualAttempts {
    store: Arc<dyn Store>,
    client: DeliveryClient,
    /// Used only to judge a response the way the dispatcher does; its
    /// schedule is never applied.
    policy: RetryPolicy,
    clock: SharedClock,
    /// How long a manual lease lasts: past it, the attempt counts as lost.
    lease: Duration,
    /// Herald's own keys, for redeliveries to per-job webhooks.
    server_keys: crate::server_keys::ServerKeys,
}

impl ManualAttempts {
    pub fn new(
        store: Arc<dyn Store>,
        client: DeliveryClient,
        policy: RetryPolicy,
        clock: SharedClock,
        lease: Duration,
    ) -> Self {
        Self {
            server_keys: crate::server_keys::ServerKeys::new(Arc::clone(&store), Arc::clone(&clock)),
            store,
            client,
            policy,
            clock,
            lease,
        }
    }

    pub async fn redeliver(&self, project: ProjectId, id: DeliveryId) -> Result<AttemptRecord, ManualError> {
        let now = self.clock.now();
        let lease = self
            .store
            .lease_for_redelivery(ManualLeaseRequest {
                project,
                delivery_id: id,
                now,
                lease_until: now.saturating_add(self.lease),
            })
            .await?;
        let (job, before) = match lease {
            ManualLease::NotFound => return Err(ManualError::NotFound),
            ManualLease::InFlight => return Err(ManualError::InFlight),
            ManualLease::WebhookDeleted => return Err(ManualError::WebhookDeleted),
            ManualLease::Leased { job, before } => (*job, *before),
        };
        let mut completion = self.send(&job).await;
        let record = completion
            .attempt
            .clone()
            .ok_or_else(|| StoreError::Corrupt("an attempt that was made has no record".into()))?;
        let (next, last_error) = after_redelivery(&before, &record, completion.now);
        completion.next = next;
        completion.last_error = last_error;
        self.finish(completion).await?;
        Ok(record)
    }

    /// `None`: no such webhook in this project.
    pub async fn ping(&self, project: ProjectId, webhook: WebhookId) -> Result<Option<PingOutcome>, StoreError> {
        let now = self.clock.now();
        let event_type = EventType::parse(PING_EVENT_TYPE)
            .map_err(|_| StoreError::Corrupt("the ping event type is not valid".into()))?;
        let event_id = EventId::generate();
        let data = format!(r#"{{"webhook_id":"{webhook}"}}"#);
        let payload = crate::domain::event::envelope(event_id, &event_type, now, &data);
        let delivery_id = DeliveryId::generate();
        let job = self
            .store
            .create_ping(PingRequest {
                project,
                webhook_id: webhook,
                event: NewEvent {
                    id: event_id,
                    event_type,
                    timestamp: now,
                    payload: payload.into(),
                },
                delivery_id,
                now,
                lease_until: now.saturating_add(self.lease),
            })
            .await?;
        let Some(job) = job else { return Ok(None) };
        let mut completion = self.send(&job).await;
        let attempt = completion
            .attempt
            .clone()
            .ok_or_else(|| StoreError::Corrupt("an attempt that was made has no record".into()))?;
        // A ping is answered now or never: no retries.
        let success = attempt.error_kind.is_none();
        completion.next = if success { NextStep::Succeeded } else { NextStep::Failed };
        self.finish(completion).await?;
        Ok(Some(PingOutcome {
            event_id,
            delivery_id,
            attempt,
        }))
    }

    async fn send(&self, job: &DeliveryJob) -> Completion {
        let context = AttemptContext {
            client: &self.client,
            policy: &self.policy,
            clock: self.clock.as_ref(),
            jitter: &FixedJitter(0.0),
        };
        let keyring = match job_format(&job.endpoint) {
            Some(_) => self.server_keys.keyring().await.ok(),
            None => None,
        };
        let mut completion = attempt(&context, job, &signer_for(&job.endpoint, keyring.as_deref())).await;
        // Disabling is the schedule's decision, never a manual attempt's.
        completion.disable_webhook = None;
        completion
    }

    /// Failure policy: one retry; if recording still fails, the lease
    /// expires and the attempt is logged as `interrupted` (the delivery then
    /// becomes due, as after a crash).
    async fn finish(&self, completion: Completion) -> Result<(), StoreError> {
        if self.store.complete(vec![completion.clone()]).await.is_ok() {
            return Ok(());
        }
        self.store.complete(vec![completion]).await.map(drop)
    }
}

/// What a redelivery's outcome makes of its delivery (see the module docs).
pub fn after_redelivery(
    before: &DeliverySummary,
    attempt: &AttemptRecord,
    now: Timestamp,
) -> (NextStep, Option<String>) {
    let success = attempt.error_kind.is_none();
    match before.state {
        DeliveryState::Pending => (
            NextStep::RetryAt(before.next_attempt_time.unwrap_or(now)),
            before.last_error.clone(),
        ),
        DeliveryState::Succeeded => (NextStep::Succeeded, None),
        DeliveryState::Failed if success => (NextStep::Succeeded, None),
        DeliveryState::Failed => (NextStep::Failed, before.last_error.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AttemptErrorKind;

    fn summary(state: DeliveryState, next: Option<i64>) -> DeliverySummary {
        DeliverySummary {
            id: DeliveryId::generate(),
            webhook_id: WebhookId::generate(),
            event_id: EventId::generate(),
            event_type: EventType::parse("a.b").expect("valid"),
            state,
            in_flight: false,
            attempt_count: 3,
            next_attempt_time: next.map(Timestamp::from_millis),
            last_error: Some("timeout".into()),
            create_time: Timestamp::from_millis(0),
        }
    }

    fn outcome(ok: bool) -> AttemptRecord {
        AttemptRecord {
            number: 4,
            start_time: Timestamp::from_millis(5),
            duration: Duration::ZERO,
            status_code: Some(if ok { 200 } else { 500 }),
            response_excerpt: None,
            error_kind: (!ok).then_some(AttemptErrorKind::HttpStatus),
            error_message: None,
        }
    }

    #[test]
    fn a_redelivery_keeps_schedules_and_only_improves_a_failure() {
        let now = Timestamp::from_millis(10);
        let pending = summary(DeliveryState::Pending, Some(99));
        for ok in [true, false] {
            assert_eq!(
                after_redelivery(&pending, &outcome(ok), now),
                (NextStep::RetryAt(Timestamp::from_millis(99)), Some("timeout".into()))
            );
        }
        let failed = summary(DeliveryState::Failed, None);
        assert_eq!(
            after_redelivery(&failed, &outcome(true), now),
            (NextStep::Succeeded, None)
        );
        assert_eq!(
            after_redelivery(&failed, &outcome(false), now),
            (NextStep::Failed, Some("timeout".into()))
        );
        let succeeded = summary(DeliveryState::Succeeded, None);
        assert_eq!(
            after_redelivery(&succeeded, &outcome(false), now),
            (NextStep::Succeeded, None)
        );
    }
}
