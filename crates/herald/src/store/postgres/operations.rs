//! SQL for long-running operations, and the [`OperationStore`] of the
//! PostgreSQL backend.
//!
//! Locking: a transition or a sweep reads the operation `FOR UPDATE`, so
//! transitions of one operation from any node apply one after the other
//! (the second sees the first's result and the state machine judges it
//! again); different operations never wait for each other, and the sweep
//! skips rows another node is changing (`SKIP LOCKED`). The event is
//! published inside the same transaction (`events::publish_within`), and
//! `NOTIFY herald_operations, '<id>'`, sent at commit, wakes the `:wait`
//! long-polls of every node.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::PostgresStore;
use super::connect::store_error;
use super::events::{Fanned, publish_within_to};
use super::job_webhooks;
use super::rows::{get, parsed, timestamp};
use crate::domain::operation::events::event;
use crate::domain::operation::{Command, Operation, OperationKind, apply};
use crate::domain::{EndpointUri, OperationId, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::operations::{
    SWEEP_CHUNK, decode_snapshot, decode_status, encode_snapshot, encode_status, namespaced_key,
};
use crate::store::{
    DeleteOperationOutcome, OperationFilter, OperationStore, OperationWaiters, Page, PageRequest, Progress,
    PublishRequest, StoreError, StoreResult, TransitionOutcome, TransitionRequest,
};

/// The channel on which committed operation changes are announced; the
/// payload is the operation's id.
pub(super) const CHANNEL: &str = "herald_operations";

const COLUMNS: &str = "id, project_id, kind, create_time, status";

fn from_row(row: &Row) -> StoreResult<Operation> {
    Ok(Operation {
        id: parsed(row, 0, "operation id", OperationId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        kind: parsed(row, 2, "operation kind", |s| OperationKind::parse(s).ok())?,
        create_time: timestamp(row, 3)?,
        status: decode_status(&get::<String>(row, 4)?)?,
    })
}

async fn load(
    client: &impl GenericClient,
    project: ProjectId,
    id: OperationId,
    for_update: bool,
) -> StoreResult<Option<Operation>> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {COLUMNS} FROM operations WHERE id = $1 AND project_id = $2{lock}");
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
    let row = client
        .query_opt(&stmt, &[&id.to_string(), &project.to_string()])
        .await
        .map_err(store_error)?;
    row.as_ref().map(from_row).transpose()
}

async fn save(client: &impl GenericClient, operation: &Operation) -> StoreResult<()> {
    let status = &operation.status;
    let stmt = client
        .prepare_cached("UPDATE operations SET state = $2, status = $3, due_at = $4, update_time = $5 WHERE id = $1")
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &operation.id.to_string(),
                &status.state.as_str(),
                &encode_status(status)?,
                &status.housekeeping_due().map(Timestamp::as_millis),
                &status.update_time.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Applies `command` to the locked operation, persists it, publishes its
/// event and queues the `NOTIFY`, all in `tx`.
async fn apply_and_publish(
    tx: &deadpool_postgres::Transaction<'_>,
    mut operation: Operation,
    command: &Command,
    now: Timestamp,
    fanned: &mut Vec<Fanned>,
) -> StoreResult<TransitionOutcome> {
    let transition = match apply(&operation.status, command, now) {
        Ok(transition) => transition,
        Err(refusal) => return Ok(TransitionOutcome::Refused(refusal)),
    };
    operation.status = transition.status;
    if !transition.changed {
        return Ok(TransitionOutcome::Applied(operation));
    }
    save(tx, &operation).await?;
    if let Some(kind) = transition.event {
        let request = PublishRequest {
            project_id: operation.project_id,
            events: vec![event(&operation, kind, now)],
            idempotency: None,
            now,
            // One event of Herald's own: its fan-out is bounded by the
            // project's webhook limit, never refused.
            max_deliveries: usize::MAX,
        };
        let (_, made) = publish_within_to(tx, &request, operation.status.job_webhooks.as_ref()).await?;
        fanned.push(made);
    }
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &operation.id.to_string()])
        .await
        .map_err(store_error)?;
    Ok(TransitionOutcome::Applied(operation))
}

async fn transition(
    tx: &deadpool_postgres::Transaction<'_>,
    request: &TransitionRequest,
    fanned: &mut Vec<Fanned>,
) -> StoreResult<TransitionOutcome> {
    let project = request.project_id.to_string();
    // Locking the operation first serialises repeats of one key too.
    let Some(operation) = load(tx, request.project_id, request.id, true).await? else {
        return Err(StoreError::NotFound);
    };
    let key = request
        .idempotency
        .as_ref()
        .map(|idempotency| namespaced_key(request.id, &request.command, &idempotency.key));
    if let (Some(key), Some(idempotency)) = (&key, &request.idempotency) {
        let previous = tx
            .query_opt(
                "SELECT request_hash, response FROM idempotency_keys WHERE project_id = $1 AND key = $2",
                &[&project, key],
            )
            .await
            .map_err(store_error)?;
        if let Some(row) = previous {
            let hash: Vec<u8> = get(&row, 0)?;
            if hash != idempotency.request_hash {
                return Err(StoreError::IdempotencyConflict);
            }
            let response: Vec<u8> = get(&row, 1)?;
            return Ok(TransitionOutcome::Replayed(decode_snapshot(
                request.project_id,
                request.id,
                &response,
            )?));
        }
    }
    let outcome = apply_and_publish(tx, operation, &request.command, request.now, fanned).await?;
    if let (Some(key), Some(idempotency), TransitionOutcome::Applied(operation)) =
        (&key, &request.idempotency, &outcome)
    {
        tx.execute(
            "INSERT INTO idempotency_keys (project_id, key, request_hash, response, create_time)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &project,
                key,
                &&idempotency.request_hash[..],
                &encode_snapshot(operation)?,
                &request.now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    }
    Ok(outcome)
}

impl PostgresStore {
    async fn after_operation_commit(&self, fanned: Vec<Fanned>, changed: &[OperationId]) {
        for fanned in fanned {
            self.publisher.after_commit(fanned).await;
        }
        // This node's waiters at once; the NOTIFY wakes them again (one
        // more read) and every other node's.
        for id in changed {
            self.operation_waiters.wake(*id);
        }
    }
}

#[async_trait]
impl OperationStore for PostgresStore {
    async fn create_operation(&self, mut operation: Operation, uris: Vec<EndpointUri>) -> StoreResult<Operation> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        if let Some(job) = &mut operation.status.job_webhooks {
            job.webhook_ids = job_webhooks::attach(
                &tx,
                operation.project_id,
                &operation.id.to_string(),
                job.format,
                &uris,
                operation.create_time,
            )
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
        }
        let status = &operation.status;
        tx.execute(
            "INSERT INTO operations (id, project_id, kind, state, status, due_at, create_time, update_time)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &operation.id.to_string(),
                &operation.project_id.to_string(),
                &operation.kind.as_str(),
                &status.state.as_str(),
                &encode_status(status)?,
                &status.housekeeping_due().map(Timestamp::as_millis),
                &operation.create_time.as_millis(),
                &status.update_time.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(operation)
    }

    async fn get_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<Option<Operation>> {
        load(&self.client().await?, project, id, false).await
    }

    async fn list_operations(
        &self,
        project: ProjectId,
        filter: OperationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Operation>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM operations
             WHERE project_id = $1 AND id > $2 AND ($3::TEXT IS NULL OR state = $3) AND ($4::TEXT IS NULL OR kind = $4)
             ORDER BY id LIMIT $5"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
        let rows = client
            .query(
                &stmt,
                &[
                    &project.to_string(),
                    &page.after.as_deref().unwrap_or(""),
                    &filter.state.map(|s| s.as_str()),
                    &filter.kind.as_ref().map(OperationKind::as_str),
                    &i64::from(page.size),
                ],
            )
            .await
            .map_err(store_error)?;
        let items = rows.iter().map(from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok(page_of(items, page.size, |op| op.id.to_string()))
    }

    async fn transition_operation(&self, request: TransitionRequest) -> StoreResult<TransitionOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let mut fanned = Vec::new();
        let outcome = transition(&tx, &request, &mut fanned).await?;
        tx.commit().await.map_err(store_error)?;
        let changed: &[OperationId] = if matches!(outcome, TransitionOutcome::Applied(_)) {
            &[request.id]
        } else {
            &[]
        };
        self.after_operation_commit(fanned, changed).await;
        Ok(outcome)
    }

    async fn delete_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<DeleteOperationOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let Some(operation) = load(&tx, project, id, true).await? else {
            return Ok(DeleteOperationOutcome::NotFound);
        };
        if !operation.status.state.is_done() {
            return Ok(DeleteOperationOutcome::NotDone(operation.status.state));
        }
        tx.execute("DELETE FROM operations WHERE id = $1", &[&id.to_string()])
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(DeleteOperationOutcome::Deleted)
    }

    async fn sweep_operations(&self, now: Timestamp) -> StoreResult<Progress> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM operations WHERE due_at IS NOT NULL AND due_at <= $1
             ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"
        );
        let rows = tx
            .query(&sql, &[&now.as_millis(), &(SWEEP_CHUNK as i64)])
            .await
            .map_err(store_error)?;
        let found = rows.len();
        let mut fanned = Vec::new();
        let mut changed = Vec::new();
        for row in &rows {
            let operation = from_row(row)?;
            let id = operation.id;
            let before = operation.status.clone();
            if let TransitionOutcome::Applied(after) =
                apply_and_publish(&tx, operation, &Command::Sweep, now, &mut fanned).await?
                && after.status != before
            {
                changed.push(id);
            }
        }
        tx.commit().await.map_err(store_error)?;
        self.after_operation_commit(fanned, &changed).await;
        let count = changed.len() as u64;
        Ok(if found < SWEEP_CHUNK {
            Progress::Done(count)
        } else {
            Progress::More(count)
        })
    }

    fn operation_waiters(&self) -> Arc<OperationWaiters> {
        Arc::clone(&self.operation_waiters)
    }
}

/// What `LISTEN herald_operations` does on this node: wake the waiters of
/// the operation named, or all of them when notifications may have been
/// missed.
pub(super) fn wake_handler(waiters: Arc<OperationWaiters>) -> super::listener::Handler {
    Arc::new(move |payload| match payload.and_then(OperationId::parse) {
        Some(id) => waiters.wake(id),
        None => waiters.wake_all(),
    })
}
