//! Domain types: the vocabulary of Herald, with no knowledge of HTTP or SQL.
//!
//! Every type here is validated when it is made (`parse`/`new`), so a value
//! that exists is a valid one: an [`EventType`] never contains a space, an
//! [`EndpointUri`] is always http(s) with a host, an id always carries its
//! prefix. The API layer parses wire input into these types; the store
//! persists them; the delivery engine acts on them.

pub mod batch;
pub mod controls;
pub mod delivery;
pub mod event;
pub mod event_type;
pub mod fanout;
pub mod health;
pub mod id;
pub mod job_webhook;
pub mod operation;
pub mod operational;
pub mod project;
pub mod secret;
pub mod stats;
pub mod time;
pub mod webhook;

pub use delivery::{AttemptErrorKind, AttemptRecord, DeliveryState};
pub use event::{EventPattern, EventType, SubscribedEvents};
pub use id::{
    ApiKeyId, BatchId, BatchRequestId, DeliveryId, EventId, FileId, OperationId, ProjectId, ReplayId, SecretId,
    WebhookId,
};
pub use time::Timestamp;
pub use webhook::{EndpointUri, SigningKind, WebhookState};

/// A validation failure of one input value. `field` names the wire field
/// when the API layer knows it; the domain only knows the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub message: String,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}
