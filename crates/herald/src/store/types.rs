//! Values passed to and returned by the store traits.

use std::sync::Arc;

use bytes::Bytes;

use crate::domain::project::Name;
use crate::domain::webhook::EndpointUri;
use crate::domain::{
    AttemptRecord, DeliveryId, DeliveryState, EventId, EventType, ProjectId, SigningKind, SubscribedEvents, Timestamp,
    WebhookId, WebhookState,
};

/// A page of a listing ordered by id. `after` is the last id of the previous
/// page (the API wraps it in an opaque token).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id to continue after, when there may be more.
    pub next_after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub project_id: ProjectId,
    pub name: Name,
    pub uri: EndpointUri,
    pub subscribed_events: SubscribedEvents,
    pub signing: SigningKind,
    pub controls: crate::domain::controls::EndpointControls,
    /// Its first signing secret, sealed by the store.
    pub secret: super::NewSecret,
    pub now: Timestamp,
    /// Refuse (`LimitExceeded`) if the project already has this many
    /// webhooks; checked in the creating transaction.
    pub max_per_project: usize,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub name: Option<Name>,
    pub uri: Option<EndpointUri>,
    pub subscribed_events: Option<SubscribedEvents>,
    pub state: Option<WebhookState>,
    /// Per-endpoint controls to set or clear.
    pub controls: super::controls::ControlsPatch,
}

impl WebhookPatch {
    /// `current` with the patch applied; every backend persists exactly
    /// this. A user's explicit state change clears the reason Herald
    /// recorded for the previous state.
    pub fn applied_to(&self, current: &crate::domain::webhook::Webhook) -> crate::domain::webhook::Webhook {
        let mut updated = current.clone();
        if let Some(name) = &self.name {
            updated.name = name.clone();
        }
        if let Some(uri) = &self.uri {
            updated.uri = uri.clone();
        }
        if let Some(events) = &self.subscribed_events {
            updated.subscribed_events = events.clone();
        }
        if let Some(state) = self.state {
            updated.state = state;
            updated.state_reason = None;
        }
        updated.controls = self.controls.applied_to(&current.controls);
        updated
    }
}

pub use crate::domain::event::NewEvent;

/// An `Idempotency-Key` and what to answer when it is used again.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of the request body: a reuse with another body is a conflict.
    pub request_hash: [u8; 32],
    /// The response body to replay.
    pub response: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub project_id: ProjectId,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<IdempotencyRecord>,
    pub now: Timestamp,
    /// Refuse (`LimitExceeded`, nothing written) if fan-out would create
    /// more deliveries than this.
    pub max_deliveries: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PublishOutcome {
    /// Committed durably, with this many deliveries fanned out.
    Published { deliveries: usize },
    /// The idempotency key was seen with the same body: nothing was created.
    Replayed { response: Vec<u8> },
}

#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub state: DeliveryState,
    pub attempt_count: u32,
    pub next_attempt_time: Option<Timestamp>,
    pub last_attempt: Option<AttemptRecord>,
    /// Why the last attempt failed, or why the delivery was given up
    /// (`webhook_deleted`, `expired`).
    pub last_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventDetail {
    pub id: EventId,
    pub event_type: EventType,
    pub timestamp: Timestamp,
    pub payload: Bytes,
    pub deliveries: Vec<DeliveryView>,
}

/// Fences a completion to the claim that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(pub i64);

#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub now: Timestamp,
    /// A claimed delivery becomes claimable again at this instant unless completed.
    pub lease_until: Timestamp,
    /// At most this many deliveries in all.
    pub limit: usize,
    /// At most this many for a webhook not listed in `room`.
    pub default_room: u32,
    /// At most this many for each listed webhook (0: skip it this time).
    pub room: Vec<(WebhookId, u32)>,
    /// After the claim, no webhook has more unexpired leases than this in
    /// the whole store, counting every dispatcher that shares it: the
    /// per-endpoint concurrency cap, held across nodes.
    pub max_leased_per_webhook: u32,
}

/// A webhook as the dispatcher needs it for one claim: where to send and
/// what to sign with. Shared by all the claim's jobs for that webhook.
#[derive(Debug)]
pub struct EndpointSnapshot {
    pub webhook_id: WebhookId,
    pub uri: EndpointUri,
    /// Every secret that signs now (more than one during a rotation overlap).
    pub secrets: Vec<super::StoredSecret>,
    /// The webhook's own retry schedule, replacing the server's.
    pub retry_schedule: Option<crate::domain::controls::RetrySchedule>,
}

#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub delivery_id: DeliveryId,
    pub lease: LeaseToken,
    pub event_id: EventId,
    pub event_time: Timestamp,
    /// 1-based number of the attempt this job makes.
    pub attempt_number: u32,
    pub payload: Bytes,
    pub endpoint: Arc<EndpointSnapshot>,
}

#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub jobs: Vec<DeliveryJob>,
    /// The earliest instant at which more work may become due, if known.
    pub next_due: Option<Timestamp>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAt(Timestamp),
    Failed,
}

/// What becomes of a claimed delivery: decided by the engine, persisted
/// by the store as given.
#[derive(Debug, Clone)]
pub struct Completion {
    pub delivery_id: DeliveryId,
    pub webhook_id: WebhookId,
    pub lease: LeaseToken,
    /// The attempt made, if one was (a delivery whose window had closed is
    /// failed without one).
    pub attempt: Option<AttemptRecord>,
    pub next: NextStep,
    /// The delivery's `last_error` from now on (`None` after a success).
    pub last_error: Option<String>,
    /// Disable the webhook (state `disabled`) with this reason, e.g. on `410 Gone`.
    pub disable_webhook: Option<String>,
    pub now: Timestamp,
    /// A scheduled attempt counts toward endpoint health under this rule
    /// (auto-disable, `delivery.recovered`) and may emit
    /// `delivery.exhausted`; a manual one (`None`) does neither.
    pub health: Option<crate::domain::health::HealthPolicy>,
}

/// A lease handed back unfinished (at shutdown), due again at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub delivery_id: DeliveryId,
    pub lease: LeaseToken,
    /// The attempt that was cut off, if its request had been sent (it may
    /// have arrived). A job still queued locally was never sent: `None`.
    pub interrupted: Option<AttemptRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionResult {
    Applied,
    /// The lease was no longer this worker's: the attempt was logged, the
    /// delivery left to its new owner.
    Stale,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Deliveries not finished (waiting or in flight).
    pub pending: u64,
    /// Of those, how many have failed at least one attempt.
    pub retrying: u64,
    /// Of those, how many are leased right now.
    pub in_flight: u64,
    /// The oldest due time among waiting deliveries that are due now.
    pub oldest_due: Option<Timestamp>,
}

/// How far a bounded piece of background work got: each call does a
/// bounded amount (so it never holds a writer for long) and says whether
/// to call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Did this many; there may be more.
    More(u64),
    /// Did this many; nothing is left.
    Done(u64),
}

impl Progress {
    pub fn count(self) -> u64 {
        match self {
            Self::More(n) | Self::Done(n) => n,
        }
    }

    pub fn is_done(self) -> bool {
        matches!(self, Self::Done(_))
    }
}
