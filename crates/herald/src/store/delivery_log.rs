//! The delivery log (what happened to each delivery, every attempt) and the
//! two ways to make an attempt outside the schedule: a redelivery of an
//! existing delivery, and a ping (a `webhook.ping` event sent to one
//! webhook). Both take a lease like a claim does, so the attempt is fenced,
//! logged through [`super::DeliveryQueue::complete`], and recovered as
//! `interrupted` if the process dies in the middle.

use async_trait::async_trait;

use super::{DeliveryJob, NewEvent, Page, PageRequest, StoreResult};
use crate::domain::{AttemptRecord, DeliveryId, DeliveryState, EventId, EventType, ProjectId, Timestamp, WebhookId};

/// Which deliveries a listing shows; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub webhook_id: Option<WebhookId>,
    pub event_id: Option<EventId>,
    /// `Pending` includes deliveries in flight.
    pub state: Option<DeliveryState>,
    /// Created at or after this instant.
    pub since: Option<Timestamp>,
    /// Created before this instant.
    pub until: Option<Timestamp>,
}

/// One delivery as the log shows it.
#[derive(Debug, Clone)]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub state: DeliveryState,
    /// Whether an attempt is in flight (a lease is held).
    pub in_flight: bool,
    pub attempt_count: u32,
    /// When the next scheduled attempt is due (pending and not in flight).
    pub next_attempt_time: Option<Timestamp>,
    pub last_error: Option<String>,
    pub create_time: Timestamp,
}

/// A delivery with every attempt, oldest first.
#[derive(Debug, Clone)]
pub struct DeliveryDetail {
    pub summary: DeliverySummary,
    pub attempts: Vec<AttemptRecord>,
}

/// Lease one delivery now, whatever its state, for a manual attempt.
#[derive(Debug, Clone)]
pub struct ManualLeaseRequest {
    pub project: ProjectId,
    pub delivery_id: DeliveryId,
    pub now: Timestamp,
    pub lease_until: Timestamp,
}

#[derive(Debug)]
pub enum ManualLease {
    /// No such delivery in this project.
    NotFound,
    /// An attempt is in flight (an unexpired lease): try again later.
    InFlight,
    /// The delivery's webhook was deleted: there is nowhere to send it.
    WebhookDeleted,
    /// Leased: `before` is the delivery as it was, which the engine
    /// restores (or improves on) when it completes the attempt.
    Leased {
        job: Box<DeliveryJob>,
        before: Box<DeliverySummary>,
    },
}

/// Create a `webhook.ping` event and its one delivery, already leased.
#[derive(Debug, Clone)]
pub struct PingRequest {
    pub project: ProjectId,
    pub webhook_id: WebhookId,
    pub event: NewEvent,
    pub delivery_id: DeliveryId,
    pub now: Timestamp,
    pub lease_until: Timestamp,
}

#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Newest first (by delivery id, which is creation order); `page.after`
    /// is the last id of the previous page.
    async fn list_deliveries(
        &self,
        project: ProjectId,
        filter: DeliveryFilter,
        page: PageRequest,
    ) -> StoreResult<Page<DeliverySummary>>;
    async fn get_delivery(&self, project: ProjectId, id: DeliveryId) -> StoreResult<Option<DeliveryDetail>>;
    /// Leases a delivery for one manual attempt (numbered after the last
    /// one), unless an attempt is in flight.
    async fn lease_for_redelivery(&self, request: ManualLeaseRequest) -> StoreResult<ManualLease>;
    /// Stores the ping event and its delivery to that webhook only (no
    /// fan-out), leased for attempt 1. `None` if the webhook does not exist
    /// (or belongs to another project).
    async fn create_ping(&self, request: PingRequest) -> StoreResult<Option<DeliveryJob>>;
}
