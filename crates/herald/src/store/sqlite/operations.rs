//! SQL for long-running operations, and the [`OperationStore`] of the
//! SQLite backend. Transitions run as writer jobs: load the status, let
//! the domain's state machine decide, persist, and publish the event in
//! the same transaction (`events::publish`).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::rows::{parsed, store_error, timestamp};
use super::writer::Lane;
use super::{events, job_webhooks};
use crate::domain::operation::events::event;
use crate::domain::operation::{Command, Operation, OperationKind, apply};
use crate::domain::{EndpointUri, OperationId, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::operations::{
    SWEEP_CHUNK, decode_snapshot, decode_status, encode_snapshot, encode_status, namespaced_key,
};
use crate::store::{
    DeleteOperationOutcome, OperationFilter, OperationStore, OperationWaiters, Page, PageRequest, Progress,
    PublishOutcome, PublishRequest, StoreError, StoreResult, TransitionOutcome, TransitionRequest,
};

const COLUMNS: &str = "id, project_id, kind, create_time, status";

/// A row as read: the status document is decoded by [`decoded`] (serde
/// errors are not rusqlite's).
type RawOperation = (OperationId, ProjectId, OperationKind, Timestamp, String);

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawOperation> {
    Ok((
        parsed(row, 0, "operation id", OperationId::parse)?,
        parsed(row, 1, "project id", ProjectId::parse)?,
        parsed(row, 2, "operation kind", |s| OperationKind::parse(s).ok())?,
        timestamp(row, 3)?,
        row.get(4)?,
    ))
}

fn decoded((id, project_id, kind, create_time, status): RawOperation) -> StoreResult<Operation> {
    Ok(Operation {
        id,
        project_id,
        kind,
        create_time,
        status: decode_status(&status)?,
    })
}

fn insert(conn: &Connection, operation: &Operation) -> StoreResult<()> {
    let status = &operation.status;
    conn.prepare_cached(
        "INSERT INTO operations (id, project_id, kind, state, status, due_at, create_time, update_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            operation.id.to_string(),
            operation.project_id.to_string(),
            operation.kind.as_str(),
            status.state.as_str(),
            encode_status(status).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            status.housekeeping_due().map(Timestamp::as_millis),
            operation.create_time.as_millis(),
            status.update_time.as_millis(),
        ])
    })
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::NotFound
        }
        other => store_error(other),
    })?;
    Ok(())
}

fn load(conn: &Connection, project: ProjectId, id: OperationId) -> StoreResult<Option<Operation>> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM operations WHERE id = ?1 AND project_id = ?2"
        ))
        .and_then(|mut stmt| {
            stmt.query_row(params![id.to_string(), project.to_string()], from_row)
                .optional()
        })
        .map_err(store_error)?;
    row.map(decoded).transpose()
}

fn list(
    conn: &Connection,
    project: ProjectId,
    filter: &OperationFilter,
    page: &PageRequest,
) -> StoreResult<Page<Operation>> {
    let rows: Vec<RawOperation> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM operations
             WHERE project_id = ?1 AND id > ?2 AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR kind = ?4)
             ORDER BY id LIMIT ?5"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(
                params![
                    project.to_string(),
                    page.after.as_deref().unwrap_or(""),
                    filter.state.map(|s| s.as_str()),
                    filter.kind.as_ref().map(OperationKind::as_str),
                    page.size
                ],
                from_row,
            )?
            .collect()
        })
        .map_err(store_error)?;
    let items = rows.into_iter().map(decoded).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |op| op.id.to_string()))
}

fn save(conn: &Connection, operation: &Operation) -> StoreResult<()> {
    let status = &operation.status;
    conn.prepare_cached("UPDATE operations SET state = ?2, status = ?3, due_at = ?4, update_time = ?5 WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.execute(params![
                operation.id.to_string(),
                status.state.as_str(),
                encode_status(status).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                status.housekeeping_due().map(Timestamp::as_millis),
                status.update_time.as_millis(),
            ])
        })
        .map_err(store_error)?;
    Ok(())
}

/// Applies `command` to the loaded operation, persists it and publishes
/// its event in the caller's transaction. Returns the outcome and how
/// many deliveries the event made.
fn apply_and_publish(
    conn: &Connection,
    mut operation: Operation,
    command: &Command,
    now: Timestamp,
) -> StoreResult<(TransitionOutcome, usize)> {
    let transition = match apply(&operation.status, command, now) {
        Ok(transition) => transition,
        Err(refusal) => return Ok((TransitionOutcome::Refused(refusal), 0)),
    };
    operation.status = transition.status;
    if !transition.changed {
        return Ok((TransitionOutcome::Applied(operation), 0));
    }
    save(conn, &operation)?;
    let mut deliveries = 0;
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
        let job = operation.status.job_webhooks.as_ref();
        if let PublishOutcome::Published { deliveries: made } = events::publish_to(conn, &request, job)? {
            deliveries = made;
        }
    }
    Ok((TransitionOutcome::Applied(operation), deliveries))
}

fn transition(conn: &Connection, request: &TransitionRequest) -> StoreResult<(TransitionOutcome, usize)> {
    let project = request.project_id.to_string();
    let key = request
        .idempotency
        .as_ref()
        .map(|idempotency| namespaced_key(request.id, &request.command, &idempotency.key));
    if let (Some(key), Some(idempotency)) = (&key, &request.idempotency) {
        let previous: Option<(Vec<u8>, Vec<u8>)> = conn
            .prepare_cached("SELECT request_hash, response FROM idempotency_keys WHERE project_id = ?1 AND key = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![project, key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(store_error)?;
        if let Some((hash, response)) = previous {
            if hash != idempotency.request_hash {
                return Err(StoreError::IdempotencyConflict);
            }
            let operation = decode_snapshot(request.project_id, request.id, &response)?;
            return Ok((TransitionOutcome::Replayed(operation), 0));
        }
    }
    let Some(operation) = load(conn, request.project_id, request.id)? else {
        return Err(StoreError::NotFound);
    };
    let (outcome, deliveries) = apply_and_publish(conn, operation, &request.command, request.now)?;
    if let (Some(key), Some(idempotency), TransitionOutcome::Applied(operation)) =
        (&key, &request.idempotency, &outcome)
    {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (project_id, key, request_hash, response, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                project,
                key,
                &idempotency.request_hash[..],
                encode_snapshot(operation).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
                request.now.as_millis()
            ])
        })
        .map_err(store_error)?;
    }
    Ok((outcome, deliveries))
}

fn delete(conn: &Connection, project: ProjectId, id: OperationId) -> StoreResult<DeleteOperationOutcome> {
    let Some(operation) = load(conn, project, id)? else {
        return Ok(DeleteOperationOutcome::NotFound);
    };
    if !operation.status.state.is_done() {
        return Ok(DeleteOperationOutcome::NotDone(operation.status.state));
    }
    conn.prepare_cached("DELETE FROM operations WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id.to_string()]))
        .map_err(store_error)?;
    Ok(DeleteOperationOutcome::Deleted)
}

/// Sweeps up to `SWEEP_CHUNK` operations due at `now`; returns the ids
/// that changed and the deliveries their events made.
fn sweep(conn: &Connection, now: Timestamp) -> StoreResult<(Progress, Vec<OperationId>, usize)> {
    let rows: Vec<RawOperation> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM operations WHERE due_at IS NOT NULL AND due_at <= ?1 ORDER BY due_at LIMIT ?2"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params![now.as_millis(), SWEEP_CHUNK as i64], from_row)?
                .collect()
        })
        .map_err(store_error)?;
    let found = rows.len();
    let mut changed = Vec::new();
    let mut deliveries = 0;
    for row in rows {
        let operation = decoded(row)?;
        let (id, before) = (operation.id, operation.status.clone());
        if let (TransitionOutcome::Applied(after), made) = apply_and_publish(conn, operation, &Command::Sweep, now)?
            && after.status != before
        {
            changed.push(id);
            deliveries += made;
        }
    }
    let progress = if found < SWEEP_CHUNK {
        Progress::Done(changed.len() as u64)
    } else {
        Progress::More(changed.len() as u64)
    };
    Ok((progress, changed, deliveries))
}

#[async_trait]
impl OperationStore for SqliteStore {
    async fn create_operation(&self, mut operation: Operation, uris: Vec<EndpointUri>) -> StoreResult<Operation> {
        self.writer
            .write(Lane::Api, 1 + uris.len(), move |conn| {
                if let Some(job) = &mut operation.status.job_webhooks {
                    job.webhook_ids = job_webhooks::attach(
                        conn,
                        operation.project_id,
                        &operation.id.to_string(),
                        job.format,
                        &uris,
                        operation.create_time,
                    )?
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                }
                insert(conn, &operation)?;
                Ok(operation)
            })
            .await
    }

    async fn get_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<Option<Operation>> {
        self.readers.read(move |conn| load(conn, project, id)).await
    }

    async fn list_operations(
        &self,
        project: ProjectId,
        filter: OperationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Operation>> {
        self.readers.read(move |conn| list(conn, project, &filter, &page)).await
    }

    async fn transition_operation(&self, request: TransitionRequest) -> StoreResult<TransitionOutcome> {
        let id = request.id;
        let (outcome, deliveries) = self
            .writer
            .write(Lane::Api, 1, move |conn| transition(conn, &request))
            .await?;
        if deliveries > 0 {
            self.work.notify_one();
        }
        if matches!(outcome, TransitionOutcome::Applied(_)) {
            self.operation_waiters.wake(id);
        }
        Ok(outcome)
    }

    async fn delete_operation(&self, project: ProjectId, id: OperationId) -> StoreResult<DeleteOperationOutcome> {
        self.writer
            .write(Lane::Api, 1, move |conn| delete(conn, project, id))
            .await
    }

    async fn sweep_operations(&self, now: Timestamp) -> StoreResult<Progress> {
        let (progress, changed, deliveries) = self
            .writer
            .write(Lane::Api, SWEEP_CHUNK, move |conn| sweep(conn, now))
            .await?;
        if deliveries > 0 {
            self.work.notify_one();
        }
        for id in changed {
            self.operation_waiters.wake(id);
        }
        Ok(progress)
    }

    fn operation_waiters(&self) -> Arc<OperationWaiters> {
        Arc::clone(&self.operation_waiters)
    }
}
