//! Long-running operations (`google.longrunning.Operation`): a job run by a
//! provider's worker whose state Herald holds, answers polls about and
//! announces by events.
//!
//! [`Operation`] is what is stored and shown; its mutable part,
//! [`OperationStatus`], changes only through [`state::apply`], the one
//! state machine every backend uses (the store loads the status inside its
//! transaction, asks `apply`, persists the answer and publishes the event
//! it names). [`events`] builds the thin payload of every event.

pub mod events;
pub mod state;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Invalid, OperationId, ProjectId, Timestamp};

pub use state::{Command, Refusal, Transition, apply};

const MAX_KIND_LEN: usize = 64;
const MAX_WORKER_LEN: usize = 128;
const MAX_MESSAGE_LEN: usize = 1024;

/// What kind of job an operation is (`video.generate`, `research`): 1 to
/// 64 ASCII letters, digits, `.`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationKind(String);

impl OperationKind {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let valid = !text.is_empty()
            && text.len() <= MAX_KIND_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(Invalid::new(format!(
                "a kind is 1 to {MAX_KIND_LEN} ASCII letters, digits, '.', '_' and '-' (e.g. \"video.generate\")"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Herald's operation states. `pending → running ⇄ requires_action →
/// succeeded | failed`; a cancel goes through `cancelling` (while a worker
/// holds the job) to `cancelled`; an operation not done by its expiry is
/// `expired`. The last four are final ("done").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Pending,
    Running,
    RequiresAction,
    Cancelling,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl OperationState {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Running,
        Self::RequiresAction,
        Self::Cancelling,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::RequiresAction => "requires_action",
            Self::Cancelling => "cancelling",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Final: nothing changes a done operation (it may only be deleted).
    pub fn is_done(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled | Self::Expired)
    }
}

/// `google.rpc.Status`-like: a numeric code and a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationError {
    pub code: i32,
    pub message: String,
}

impl OperationError {
    /// `google.rpc.Code.CANCELLED`.
    pub const CANCELLED: i32 = 1;
    /// `google.rpc.Code.UNKNOWN`: a worker's failure without a code.
    pub const UNKNOWN: i32 = 2;
    /// `google.rpc.Code.DEADLINE_EXCEEDED`.
    pub const DEADLINE_EXCEEDED: i32 = 4;

    /// A worker's error: code 1..=16 (a `google.rpc.Code` other than OK),
    /// message 1 to 1024 characters.
    pub fn new(code: i32, message: &str) -> Result<Self, Invalid> {
        if !(1..=16).contains(&code) {
            return Err(Invalid::new("code must be a google.rpc.Code from 1 to 16"));
        }
        Ok(Self {
            code,
            message: bounded_text(message, MAX_MESSAGE_LEN, "message")?,
        })
    }
}

/// How far a worker says it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl OperationProgress {
    pub fn new(percent: Option<f64>, message: Option<&str>) -> Result<Self, Invalid> {
        if let Some(percent) = percent
            && !(0.0..=100.0).contains(&percent)
        {
            return Err(Invalid::new("percent must be a number from 0 to 100"));
        }
        let message = message
            .map(|m| bounded_text(m, MAX_MESSAGE_LEN, "message"))
            .transpose()?;
        Ok(Self { percent, message })
    }
}

/// A worker's name: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerName(String);

impl WorkerName {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        bounded_text(text, MAX_WORKER_LEN, "a worker name").map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The worker holding a running operation and until when. A holder that
/// stops heartbeating past `expire_time` has *stalled*: the operation is
/// reported (`operation.stalled`) and another worker may `:start` it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLease {
    pub worker: WorkerName,
    #[serde(with = "millis")]
    pub expire_time: Timestamp,
    /// How far each heartbeat extends the lease.
    #[serde(with = "duration_millis")]
    pub duration: Duration,
}

/// The mutable part of an operation: what [`state::apply`] reads and
/// writes. Stored as one JSON document beside the indexed columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationStatus {
    pub state: OperationState,
    /// The client's `metadata` object at create (shown under `metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metadata: Option<serde_json::Value>,
    /// `webhook_config`'s rows and mode: where the events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_webhooks: Option<crate::domain::job_webhook::JobWebhooks>,
    /// Copied into every event of the operation (`webhook_config.user_metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<OperationProgress>,
    /// What the worker needs from the client (`requires_action`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<WorkerLease>,
    /// `operation.stalled` was published for the current lease.
    #[serde(default)]
    pub stall_reported: bool,
    /// Opt-in `operation.progress` events (throttled).
    #[serde(default)]
    pub progress_events: bool,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "millis_opt")]
    pub last_progress_event: Option<Timestamp>,
    /// The `sequence` of the last event published about this operation.
    #[serde(default)]
    pub sequence: u64,
    #[serde(with = "millis")]
    pub expire_time: Timestamp,
    #[serde(with = "millis")]
    pub update_time: Timestamp,
}

impl OperationStatus {
    /// When housekeeping must look at this operation next (its expiry, or
    /// its worker's lease running out); `None` once it is done.
    pub fn housekeeping_due(&self) -> Option<Timestamp> {
        if self.state.is_done() {
            return None;
        }
        let lease = match (&self.lease, self.state) {
            (Some(lease), OperationState::Running | OperationState::Cancelling) if !self.stall_reported => {
                Some(lease.expire_time)
            }
            _ => None,
        };
        Some(lease.map_or(self.expire_time, |lease| lease.min(self.expire_time)))
    }
}

/// An operation as stored and shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub id: OperationId,
    pub project_id: ProjectId,
    pub kind: OperationKind,
    pub create_time: Timestamp,
    pub status: OperationStatus,
}

impl Operation {
    /// A new `pending` operation, expiring `expire_after` from `now`.
    pub fn new(
        project_id: ProjectId,
        kind: OperationKind,
        client_metadata: Option<serde_json::Value>,
        progress_events: bool,
        expire_after: Duration,
        now: Timestamp,
    ) -> Self {
        Self {
            id: OperationId::generate(),
            project_id,
            kind,
            create_time: now,
            status: OperationStatus {
                state: OperationState::Pending,
                client_metadata,
                job_webhooks: None,
                user_metadata: None,
                progress: None,
                action: None,
                response: None,
                error: None,
                lease: None,
                stall_reported: false,
                progress_events,
                last_progress_event: None,
                sequence: 0,
                expire_time: now.saturating_add(expire_after),
                update_time: now,
            },
        }
    }
}

/// `expire_after` bounds: at least a second, at most 30 days.
pub fn check_expire_after(duration: Duration) -> Result<Duration, Invalid> {
    const MAX: Duration = Duration::from_secs(30 * 24 * 3600);
    if duration < Duration::from_secs(1) || duration > MAX {
        return Err(Invalid::new("expire_after must be from 1s to 30 days (e.g. \"24h\")"));
    }
    Ok(duration)
}

fn bounded_text(text: &str, max: usize, what: &str) -> Result<String, Invalid> {
    if text.is_empty() || text.chars().count() > max {
        return Err(Invalid::new(format!("{what} must be 1 to {max} characters long")));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Invalid::new(format!("{what} must not contain control characters")));
    }
    Ok(text.to_owned())
}

/// Instants stored as integer milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::Timestamp;

    pub fn serialize<S: Serializer>(value: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(value.as_millis())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        i64::deserialize(deserializer).map(Timestamp::from_millis)
    }
}

mod millis_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::domain::Timestamp;

    pub fn serialize<S: Serializer>(value: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.serialize_some(&value.as_millis()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<i64>::deserialize(deserializer).map(|v| v.map(Timestamp::from_millis))
    }
}

mod duration_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_validated() {
        assert!(OperationKind::parse("video.generate").is_ok());
        for bad in ["", "has space", "ü", &"k".repeat(65)] {
            assert!(OperationKind::parse(bad).is_err(), "{bad}");
        }
        assert!(OperationError::new(0, "x").is_err());
        assert!(OperationError::new(17, "x").is_err());
        assert!(OperationError::new(13, "").is_err());
        assert!(OperationError::new(13, "boom").is_ok());
        assert!(OperationProgress::new(Some(100.5), None).is_err());
        assert!(OperationProgress::new(Some(-1.0), None).is_err());
        assert!(OperationProgress::new(Some(42.0), Some("half")).is_ok());
        assert!(WorkerName::parse("w\u{0}").is_err());
        assert!(check_expire_after(Duration::ZERO).is_err());
        assert!(check_expire_after(Duration::from_secs(31 * 24 * 3600)).is_err());
        for state in OperationState::ALL {
            assert_eq!(OperationState::parse(state.as_str()), Some(state));
        }
    }

    #[test]
    fn status_round_trips_through_its_stored_form() {
        let op = Operation::new(
            ProjectId::generate(),
            OperationKind::parse("k").unwrap(),
            Some(serde_json::json!({"a": 1})),
            true,
            Duration::from_secs(60),
            Timestamp::from_millis(1000),
        );
        let text = serde_json::to_string(&op.status).unwrap();
        let back: OperationStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(back, op.status);
        assert_eq!(op.status.housekeeping_due(), Some(Timestamp::from_millis(61_000)));
    }
}
