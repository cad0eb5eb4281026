//! The `google.longrunning.Operation` wire view of an operation.

use serde::Serialize;

use crate::domain::job_webhook::JobWebhooks;
use crate::domain::operation::{Operation, OperationError, OperationProgress, OperationState};
use crate::domain::{OperationId, Timestamp};

/// The `google.longrunning.Operation` view.
#[derive(Serialize)]
pub(in crate::api) struct OperationView {
    name: String,
    id: OperationId,
    done: bool,
    metadata: MetadataView,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OperationError>,
}

#[derive(Serialize)]
struct MetadataView {
    kind: String,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<OperationProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_expire_time: Option<Timestamp>,
    /// The `sequence` of the operation's last event.
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_metadata: Option<serde_json::Value>,
    /// The per-job webhooks: mode, signature format, hidden webhook ids
    /// (their deliveries are in `/v1/deliveries`).
    #[serde(skip_serializing_if = "Option::is_none")]
    job_webhooks: Option<JobWebhooks>,
    progress_events: bool,
    create_time: Timestamp,
    update_time: Timestamp,
    expire_time: Timestamp,
}

impl From<Operation> for OperationView {
    fn from(operation: Operation) -> Self {
        let status = operation.status;
        let running_lease = status
            .lease
            .filter(|_| matches!(status.state, OperationState::Running | OperationState::Cancelling));
        Self {
            name: format!("operations/{}", operation.id),
            id: operation.id,
            done: status.state.is_done(),
            metadata: MetadataView {
                kind: operation.kind.as_str().to_owned(),
                state: status.state.as_str(),
                progress: status.progress,
                action: status.action,
                worker: running_lease.as_ref().map(|lease| lease.worker.as_str().to_owned()),
                lease_expire_time: running_lease.map(|lease| lease.expire_time),
                sequence: status.sequence,
                client_metadata: status.client_metadata,
                user_metadata: status.user_metadata,
                job_webhooks: status.job_webhooks,
                progress_events: status.progress_events,
                create_time: operation.create_time,
                update_time: status.update_time,
                expire_time: status.expire_time,
            },
            response: status.response,
            error: status.error,
        }
    }
}

#[derive(Serialize)]
pub(in crate::api) struct OperationList {
    pub operations: Vec<OperationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}
