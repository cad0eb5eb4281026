//! The events an operation publishes: thin payloads `{id, kind, state,
//! sequence, error?, progress?, user_metadata?}` built with the one
//! envelope builder, so they look like every other event.

use serde::Serialize;

use super::{Operation, OperationError, OperationProgress};
use crate::domain::event::{EventType, NewEvent};
use crate::domain::{OperationId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationEventKind {
    Running,
    RequiresAction,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
    Stalled,
    Progress,
}

impl OperationEventKind {
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Running => "operation.running",
            Self::RequiresAction => "operation.requires_action",
            Self::Succeeded => "operation.succeeded",
            Self::Failed => "operation.failed",
            Self::Cancelled => "operation.cancelled",
            Self::Expired => "operation.expired",
            Self::Stalled => "operation.stalled",
            Self::Progress => "operation.progress",
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    id: OperationId,
    name: String,
    kind: &'a str,
    state: &'static str,
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a OperationError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<&'a OperationProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_metadata: Option<&'a serde_json::Value>,
}

/// The event announcing `operation`'s state after a transition (its status
/// already carries the event's `sequence`).
pub fn event(operation: &Operation, kind: OperationEventKind, now: Timestamp) -> NewEvent {
    let status = &operation.status;
    let payload = Payload {
        id: operation.id,
        name: format!("operations/{}", operation.id),
        kind: operation.kind.as_str(),
        state: status.state.as_str(),
        sequence: status.sequence,
        error: status.error.as_ref(),
        progress: (kind == OperationEventKind::Progress)
            .then_some(status.progress.as_ref())
            .flatten(),
        user_metadata: status.user_metadata.as_ref(),
    };
    // The names above are valid event types by construction.
    let event_type = EventType::parse(kind.event_type()).unwrap_or_else(|_| unreachable!("a valid event type"));
    NewEvent::from_data(event_type, now, &payload)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::ProjectId;
    use crate::domain::operation::{OperationKind, OperationState};

    #[test]
    fn payloads_are_thin_and_carry_the_sequence() {
        for kind in [
            OperationEventKind::Running,
            OperationEventKind::RequiresAction,
            OperationEventKind::Succeeded,
            OperationEventKind::Failed,
            OperationEventKind::Cancelled,
            OperationEventKind::Expired,
            OperationEventKind::Stalled,
            OperationEventKind::Progress,
        ] {
            assert!(EventType::parse(kind.event_type()).is_ok());
        }
        let mut op = Operation::new(
            ProjectId::generate(),
            OperationKind::parse("video").unwrap(),
            None,
            false,
            Duration::from_secs(60),
            Timestamp::from_millis(0),
        );
        op.status.state = OperationState::Failed;
        op.status.sequence = 3;
        op.status.error = Some(OperationError::new(13, "boom").unwrap());
        op.status.response = Some(serde_json::json!({"big": "result"}));
        op.status.user_metadata = Some(serde_json::json!({"job": "x"}));
        let event = event(&op, OperationEventKind::Failed, Timestamp::from_millis(5));
        let envelope: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        assert_eq!(envelope["type"], "operation.failed");
        let data = &envelope["data"];
        assert_eq!(data["id"], op.id.to_string());
        assert_eq!(data["state"], "failed");
        assert_eq!(data["sequence"], 3);
        assert_eq!(data["error"]["code"], 13);
        assert_eq!(data["user_metadata"]["job"], "x");
        assert!(data.get("response").is_none(), "thin: no results in events");
    }
}
