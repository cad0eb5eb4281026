//! Encodings every backend shares: how a subscription's patterns are kept
//! as text, and how a listing page is cut.

use super::{Page, StoreError, StoreResult};
use crate::domain::{DeliveryState, SubscribedEvents, Timestamp};

/// A delivery's stored `state` as the API shows it: `leased` is a pending
/// delivery in flight. Returns the state and whether it is in flight.
pub(crate) fn delivery_state(stored: &str) -> (DeliveryState, bool) {
    match stored {
        "pending" => (DeliveryState::Pending, false),
        "leased" => (DeliveryState::Pending, true),
        "succeeded" => (DeliveryState::Succeeded, false),
        _ => (DeliveryState::Failed, false),
    }
}

/// The stored states a delivery state (as a filter) stands for: the
/// inverse of [`delivery_state`].
pub(crate) fn stored_states(state: DeliveryState) -> &'static [&'static str] {
    match state {
        DeliveryState::Pending => &["pending", "leased"],
        DeliveryState::Succeeded => &["succeeded"],
        DeliveryState::Failed => &["failed"],
    }
}

/// The due time to show for a delivery: only a pending delivery waiting
/// for its turn has one (in flight, the stored instant is the lease's
/// expiry; finished, there is none).
pub(crate) fn next_attempt_time(state: DeliveryState, in_flight: bool, stored: Option<Timestamp>) -> Option<Timestamp> {
    (state == DeliveryState::Pending && !in_flight)
        .then_some(stored)
        .flatten()
}

/// The patterns as a JSON array of strings, the stored form.
pub(crate) fn patterns_json(events: &SubscribedEvents) -> StoreResult<String> {
    serde_json::to_string(&events.to_strings()).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Parses the stored JSON list of patterns.
pub(crate) fn parse_patterns(text: &str) -> Option<SubscribedEvents> {
    let items: Vec<String> = serde_json::from_str(text).ok()?;
    SubscribedEvents::parse(&items).ok()
}

/// Wraps one page of a listing ordered by id; a full page may have a successor.
pub(crate) fn page_of<T>(items: Vec<T>, size: u32, id_of: impl Fn(&T) -> String) -> Page<T> {
    let full = u32::try_from(items.len()).is_ok_and(|len| len >= size) && size > 0;
    let next_after = if full { items.last().map(id_of) } else { None };
    Page { items, next_after }
}
