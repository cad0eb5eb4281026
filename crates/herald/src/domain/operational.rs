//! Operational events: what Herald itself announces about endpoint health,
//! through the same durable pipeline as producers' events (fan-out,
//! signing, retries, the log). Payloads are thin: ids and the figures that
//! explain the change, never event data.
//!
//! Rules (one place, every backend):
//! - They are published in the transaction that makes the change they
//!   announce (the completion that disables a webhook or exhausts a
//!   delivery), so neither exists without the other.
//! - Only webhooks that name them receive them (`webhook.disabled`,
//!   `delivery.*`, ...): a `*` subscription does not, so existing receivers
//!   never start getting Herald's own events unasked.
//! - Fan-out reaches enabled webhooks only, and a webhook is disabled
//!   before its `webhook.disabled` is published: an event is never
//!   delivered to the disabled webhook it is about.
//! - No operational event is emitted about a delivery of an operational
//!   event (two dead endpoints subscribed to each other's
//!   `delivery.exhausted` would otherwise feed each other for ever).
//! - Producers cannot publish these types (the `webhook.` and `delivery.`
//!   namespaces are Herald's).

use serde::Serialize;

use super::{DeliveryId, EventId, EventType, Timestamp, WebhookId};

pub const WEBHOOK_DISABLED: &str = "webhook.disabled";
pub const DELIVERY_EXHAUSTED: &str = "delivery.exhausted";
pub const DELIVERY_RECOVERED: &str = "delivery.recovered";

/// Namespaces reserved for events Herald emits (`webhook.ping` included).
const RESERVED_PREFIXES: [&str; 2] = ["webhook.", "delivery."];

/// Whether `event_type` is one of Herald's own (reserved) types.
pub fn is_operational(event_type: &EventType) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| event_type.as_str().starts_with(prefix))
}

/// The type of one of the constants above.
pub fn event_type(name: &'static str) -> EventType {
    // The constants are valid event types (checked by a test).
    EventType::parse(name).unwrap_or_else(|_| unreachable!("operational event types are valid"))
}

/// Why Herald disabled a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    /// The auto-disable rule (`domain::health`): state
    /// `disabled_due_to_failed_deliveries`.
    FailedDeliveries,
    /// The endpoint answered `410 Gone`: state `disabled`.
    Gone,
}

/// `webhook.disabled`
#[derive(Debug, Clone, Serialize)]
pub struct WebhookDisabled {
    pub webhook_id: WebhookId,
    pub reason: DisabledReason,
    /// The webhook's `state_reason`, for people.
    pub message: String,
    pub consecutive_failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}

/// `delivery.exhausted`: a delivery failed for good (attempts used up,
/// window closed, or the endpoint answered `410`).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryExhausted {
    pub webhook_id: WebhookId,
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub event_type: String,
    pub attempt_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `delivery.recovered`: the first success after a run of failures.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecovered {
    pub webhook_id: WebhookId,
    pub delivery_id: DeliveryId,
    pub failed_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
}

pub fn rfc3339(at: Option<Timestamp>) -> Option<String> {
    at.map(Timestamp::to_rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operational_types_are_valid_and_reserved() {
        for name in [WEBHOOK_DISABLED, DELIVERY_EXHAUSTED, DELIVERY_RECOVERED, "webhook.ping"] {
            assert!(is_operational(&event_type_of(name)), "{name}");
        }
        for name in ["batch.succeeded", "webhooks.x", "delivery", "deliveryx.y"] {
            assert!(!is_operational(&event_type_of(name)), "{name}");
        }
        let _ = event_type(WEBHOOK_DISABLED);
    }

    fn event_type_of(name: &str) -> EventType {
        EventType::parse(name).expect("valid")
    }
}
