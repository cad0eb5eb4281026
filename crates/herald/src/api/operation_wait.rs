//! `GET /v1/operations/{id}:wait`: a long-poll that answers the moment the
//! operation is done, or at the timeout with its current state.
//!
//! Cost: a waiter registers in the store's in-memory registry and reads the
//! operation once, then once per change of that operation (woken by the
//! committing node directly, by `NOTIFY` on other nodes) and once at its
//! timeout. Nothing polls while nothing changes. The registration happens
//! before the first read, so a change committed in between still wakes it.

use std::time::Duration;

use super::AppState;
use crate::domain::operation::Operation;
use crate::domain::{OperationId, ProjectId};
use crate::store::StoreResult;

/// The operation once done, or as it is at `timeout`; `None` if it does
/// not exist (or was deleted meanwhile).
pub(super) async fn wait(
    state: &AppState,
    project: ProjectId,
    id: OperationId,
    timeout: Duration,
) -> StoreResult<Option<Operation>> {
    let waiters = state.store.operation_waiters();
    let guard = waiters.watch(id);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let changed = guard.notify().notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let operation = state.store.get_operation(project, id).await?;
        let Some(current) = &operation else { return Ok(None) };
        if current.status.state.is_done() {
            return Ok(operation);
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Ok(operation);
        }
    }
}
