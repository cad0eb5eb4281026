//! SQL for files (chunked) and batches (rows, requests, their leases).

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{parsed, parsed_opt, store_error, timestamp, timestamp_opt};
use super::{events, job_webhooks};
use crate::domain::batch::{self, Batch, BatchError, BatchStatus, BatchWebhooks, RequestCounts};
use crate::domain::{BatchId, FileId, ProjectId, Timestamp};
use crate::store::batches::{
    AddOutcome, CancelOutcome, FINISH_ROWS, FileRecord, Finish, FinishStep, ListPage, NewBatch, NewBatchRequest,
    NewFile, Piece, RequestClaim, RequestCompletion, RequestJob, RequestUpdate, ResultRow, Validated, ValidationLease,
};
use crate::store::{LeaseToken, PublishOutcome, PublishRequest, StoreError, StoreResult};

/// At open (one process owns the database): every lease belongs to a dead
/// process, so its requests are due again and its validations reclaimable.
/// A request that was in flight may thus be sent twice; its
/// `Idempotency-Key` lets the upstream tell.
pub(super) fn recover_leases(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "UPDATE batch_requests SET state = 0, lease_token = NULL, next_attempt_at = 0 WHERE state = 1;
         UPDATE batches SET lease_until = NULL, lease_token = NULL WHERE lease_until IS NOT NULL;",
    )
    .map_err(super::unavailable)
}

const FILE_COLUMNS: &str = "id, project_id, purpose, filename, bytes, create_time";

fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: parsed(row, 0, "file id", FileId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        purpose: row.get(2)?,
        filename: row.get(3)?,
        bytes: row.get::<_, i64>(4)?.max(0).cast_unsigned(),
        created_at: timestamp(row, 5)?,
    })
}

pub(super) fn begin_file(conn: &Connection, file: &NewFile) -> StoreResult<()> {
    conn.execute(
        "INSERT INTO files (id, project_id, purpose, filename, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            file.id.to_string(),
            file.project_id.to_string(),
            file.purpose,
            file.filename,
            file.now.as_millis()
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

pub(super) fn append_chunk(conn: &Connection, id: FileId, seq: u32, data: &[u8]) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO file_chunks (file_id, seq, data) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| stmt.execute(params![id.to_string(), seq, data]))
        .map_err(store_error)?;
    Ok(())
}

pub(super) fn finish_file(conn: &Connection, id: FileId, bytes: u64) -> StoreResult<FileRecord> {
    conn.execute(
        "UPDATE files SET ready = 1, bytes = ?2 WHERE id = ?1",
        params![id.to_string(), bytes.cast_signed()],
    )
    .map_err(store_error)?;
    conn.query_row(
        &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = ?1"),
        [id.to_string()],
        file_from_row,
    )
    .optional()
    .map_err(store_error)?
    .ok_or(StoreError::NotFound)
}

pub(super) fn discard_file(conn: &Connection, id: FileId) -> StoreResult<()> {
    conn.execute("DELETE FROM file_chunks WHERE file_id = ?1", [id.to_string()])
        .map_err(store_error)?;
    conn.execute("DELETE FROM files WHERE id = ?1", [id.to_string()])
        .map_err(store_error)?;
    Ok(())
}

/// Abandoned uploads deleted per call.
const PRUNE_FILES: i64 = 100;

pub(super) fn prune_abandoned_uploads(conn: &Connection, before: Timestamp) -> StoreResult<crate::store::Progress> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM files WHERE ready = 0 AND create_time < ?1
               AND id NOT IN (SELECT output_file_id FROM batches WHERE finish_kind IS NOT NULL AND output_file_id IS NOT NULL)
               AND id NOT IN (SELECT error_file_id FROM batches WHERE finish_kind IS NOT NULL AND error_file_id IS NOT NULL)
             LIMIT ?2",
        )
        .and_then(|mut stmt| stmt.query_map(params![before.as_millis(), PRUNE_FILES], |row| row.get(0))?.collect())
        .map_err(store_error)?;
    for id in &ids {
        conn.execute("DELETE FROM file_chunks WHERE file_id = ?1", [id])
            .map_err(store_error)?;
        conn.execute("DELETE FROM files WHERE id = ?1", [id])
            .map_err(store_error)?;
    }
    let count = ids.len() as u64;
    Ok(if (ids.len() as i64) < PRUNE_FILES {
        crate::store::Progress::Done(count)
    } else {
        crate::store::Progress::More(count)
    })
}

pub(super) fn delete_file(conn: &Connection, project: ProjectId, id: FileId) -> StoreResult<bool> {
    let exists = get_file(conn, project, id)?.is_some();
    if exists {
        discard_file(conn, id)?;
    }
    Ok(exists)
}

pub(super) fn list_files(
    conn: &Connection,
    project: ProjectId,
    after: Option<FileId>,
    limit: u32,
) -> StoreResult<ListPage<FileRecord>> {
    let after = after.map_or_else(|| "~".to_owned(), |id| id.to_string());
    let mut items: Vec<FileRecord> = conn
        .prepare_cached(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE project_id = ?1 AND ready = 1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params![project.to_string(), after, i64::from(limit) + 1], file_from_row)?
                .collect()
        })
        .map_err(store_error)?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(ListPage { items, has_more })
}

pub(super) fn get_file(conn: &Connection, project: ProjectId, id: FileId) -> StoreResult<Option<FileRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {FILE_COLUMNS} FROM files WHERE id = ?1 AND project_id = ?2 AND ready = 1"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([id.to_string(), project.to_string()], file_from_row)
            .optional()
    })
    .map_err(store_error)
}

pub(super) fn file_chunk(conn: &Connection, id: FileId, seq: u32) -> StoreResult<Option<Bytes>> {
    conn.prepare_cached("SELECT data FROM file_chunks WHERE file_id = ?1 AND seq = ?2")
        .and_then(|mut stmt| {
            stmt.query_row(params![id.to_string(), seq], |row| row.get::<_, Vec<u8>>(0))
                .optional()
        })
        .map(|data| data.map(Bytes::from))
        .map_err(store_error)
}

const BATCH_COLUMNS: &str = "id, project_id, input_file_id, endpoint, completion_window_ms, status, sequence, total, \
     completed, failed, errors, metadata, output_file_id, error_file_id, created_at, in_progress_at, expires_at, \
     finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, webhook_config";

fn batch_from_row(row: &Row<'_>) -> rusqlite::Result<Batch> {
    let errors: Option<String> = row.get(10)?;
    let count = |index| row.get::<_, i64>(index).map(|v| v.max(0).cast_unsigned());
    Ok(Batch {
        id: parsed(row, 0, "batch id", BatchId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        input_file_id: parsed(row, 2, "file id", FileId::parse)?,
        endpoint: row.get(3)?,
        completion_window: std::time::Duration::from_millis(row.get::<_, i64>(4)?.max(0).cast_unsigned()),
        status: parsed(row, 5, "batch status", BatchStatus::parse)?,
        sequence: count(6)?,
        counts: RequestCounts {
            total: count(7)?,
            completed: count(8)?,
            failed: count(9)?,
        },
        errors: errors
            .and_then(|text| serde_json::from_str::<Vec<BatchError>>(&text).ok())
            .unwrap_or_default(),
        metadata: row.get(11)?,
        output_file_id: parsed_opt(row, 12, "file id", FileId::parse)?,
        error_file_id: parsed_opt(row, 13, "file id", FileId::parse)?,
        created_at: timestamp(row, 14)?,
        in_progress_at: timestamp_opt(row, 15)?,
        expires_at: timestamp(row, 16)?,
        finalizing_at: timestamp_opt(row, 17)?,
        completed_at: timestamp_opt(row, 18)?,
        failed_at: timestamp_opt(row, 19)?,
        expired_at: timestamp_opt(row, 20)?,
        cancelling_at: timestamp_opt(row, 21)?,
        cancelled_at: timestamp_opt(row, 22)?,
        webhooks: parsed_opt(row, 23, "batch webhook_config", BatchWebhooks::parse)?,
    })
}

fn load_batch(conn: &Connection, id: BatchId) -> StoreResult<Option<Batch>> {
    conn.prepare_cached(&format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?1"))
        .and_then(|mut stmt| stmt.query_row([id.to_string()], batch_from_row).optional())
        .map_err(store_error)
}

pub(super) fn create_batch(conn: &Connection, batch: &NewBatch) -> StoreResult<Batch> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM files WHERE id = ?1 AND project_id = ?2 AND ready = 1)",
            [batch.input_file_id.to_string(), batch.project_id.to_string()],
            |row| row.get(0),
        )
        .map_err(store_error)?;
    if !exists {
        return Err(StoreError::NotFound);
    }
    let window = i64::try_from(batch.completion_window.as_millis()).unwrap_or(i64::MAX);
    let mut webhooks = batch.webhooks.clone();
    if let Some(webhooks) = &mut webhooks {
        webhooks.job.webhook_ids = job_webhooks::attach(
            conn,
            batch.project_id,
            &batch.id.to_string(),
            webhooks.job.format,
            &batch.webhook_uris,
            batch.now,
        )?
        .iter()
        .map(ToString::to_string)
        .collect();
    }
    conn.execute(
        "INSERT INTO batches (id, project_id, input_file_id, endpoint, completion_window_ms, status, metadata,
                              created_at, expires_at, webhook_config)
         VALUES (?1, ?2, ?3, ?4, ?5, 'validating', ?6, ?7, ?8, ?9)",
        params![
            batch.id.to_string(),
            batch.project_id.to_string(),
            batch.input_file_id.to_string(),
            batch.endpoint,
            window,
            batch.metadata,
            batch.now.as_millis(),
            batch.now.saturating_add(batch.completion_window).as_millis(),
            BatchWebhooks::to_column(webhooks.as_ref())
        ],
    )
    .map_err(store_error)?;
    load_batch(conn, batch.id)?.ok_or(StoreError::NotFound)
}

pub(super) fn get_batch(conn: &Connection, project: ProjectId, id: BatchId) -> StoreResult<Option<Batch>> {
    Ok(load_batch(conn, id)?.filter(|batch| batch.project_id == project))
}

pub(super) fn list_batches(
    conn: &Connection,
    project: ProjectId,
    after: Option<BatchId>,
    limit: u32,
) -> StoreResult<ListPage<Batch>> {
    let after = after.map_or_else(|| "~".to_owned(), |id| id.to_string());
    let mut items: Vec<Batch> = conn
        .prepare_cached(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE project_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(
                params![project.to_string(), after, i64::from(limit) + 1],
                batch_from_row,
            )?
            .collect()
        })
        .map_err(store_error)?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(ListPage { items, has_more })
}

pub(super) fn cancel_batch(
    conn: &Connection,
    project: ProjectId,
    id: BatchId,
    now: Timestamp,
) -> StoreResult<Option<CancelOutcome>> {
    let Some(batch) = get_batch(conn, project, id)? else {
        return Ok(None);
    };
    match batch.status {
        BatchStatus::Validating | BatchStatus::InProgress => {
            conn.execute(
                "UPDATE batches SET status = 'cancelling', cancelling_at = ?2 WHERE id = ?1",
                params![id.to_string(), now.as_millis()],
            )
            .map_err(store_error)?;
            Ok(load_batch(conn, id)?.map(|b| CancelOutcome::Cancelling(Box::new(b))))
        }
        BatchStatus::Cancelling => Ok(Some(CancelOutcome::Cancelling(Box::new(batch)))),
        status => Ok(Some(CancelOutcome::Finished(status))),
    }
}

/// Sets the batch's new status (with its `*_at`), counts the event in
/// `sequence` and publishes it, all in the caller's transaction. Returns
/// the batch and whether deliveries were made.
fn change_status(
    conn: &Connection,
    id: BatchId,
    status: BatchStatus,
    now: Timestamp,
    extra_sql: &str,
) -> StoreResult<(Batch, bool)> {
    let column = match status {
        BatchStatus::InProgress => "in_progress_at",
        BatchStatus::Completed => "completed_at",
        BatchStatus::Failed => "failed_at",
        BatchStatus::Expired => "expired_at",
        BatchStatus::Cancelled => "cancelled_at",
        BatchStatus::Finalizing => "finalizing_at",
        BatchStatus::Cancelling => "cancelling_at",
        BatchStatus::Validating => "created_at",
    };
    let bump = i64::from(status.event_type().is_some());
    conn.execute(
        &format!(
            "UPDATE batches SET status = ?2, {column} = ?3, sequence = sequence + ?4, lease_token = NULL,
                    lease_until = NULL {extra_sql} WHERE id = ?1"
        ),
        params![id.to_string(), status.as_str(), now.as_millis(), bump],
    )
    .map_err(store_error)?;
    let batch = load_batch(conn, id)?.ok_or(StoreError::NotFound)?;
    let mut delivered = false;
    if let Some(event) = batch::status_event(&batch, now) {
        let outcome = events::publish_to(
            conn,
            &PublishRequest {
                project_id: batch.project_id,
                events: vec![event],
                idempotency: None,
                now,
                max_deliveries: usize::MAX,
            },
            BatchWebhooks::job_of(&batch),
        )?;
        delivered = matches!(outcome, PublishOutcome::Published { deliveries } if deliveries > 0);
    }
    Ok((batch, delivered))
}

/// Progress events published per call at most.
const PROGRESS_BATCHES: i64 = 100;

pub(super) fn publish_progress(
    conn: &Connection,
    now: Timestamp,
    interval: std::time::Duration,
) -> StoreResult<(usize, bool)> {
    let since = now.as_millis() - i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM batches WHERE status = 'in_progress' AND finish_kind IS NULL AND completed + failed <> progress_done
               AND (progress_at IS NULL OR progress_at <= ?1) LIMIT ?2",
        )
        .and_then(|mut stmt| stmt.query_map(params![since, PROGRESS_BATCHES], |row| row.get(0))?.collect())
        .map_err(store_error)?;
    let mut delivered = false;
    for id in &ids {
        conn.execute(
            "UPDATE batches SET progress_at = ?2, progress_done = completed + failed, sequence = sequence + 1 WHERE id = ?1",
            params![id, now.as_millis()],
        )
        .map_err(store_error)?;
        let id = BatchId::parse(id).ok_or_else(|| StoreError::Corrupt(format!("invalid batch id {id:?}")))?;
        let batch = load_batch(conn, id)?.ok_or(StoreError::NotFound)?;
        if let Some(event) = batch::progress_event(&batch, now) {
            let outcome = events::publish_to(
                conn,
                &PublishRequest {
                    project_id: batch.project_id,
                    events: vec![event],
                    idempotency: None,
                    now,
                    max_deliveries: usize::MAX,
                },
                BatchWebhooks::job_of(&batch),
            )?;
            delivered |= matches!(outcome, PublishOutcome::Published { deliveries } if deliveries > 0);
        }
    }
    Ok((ids.len(), delivered))
}

pub(super) fn claim_validation(
    conn: &Connection,
    now: Timestamp,
    lease_until: Timestamp,
    token: LeaseToken,
) -> StoreResult<Option<ValidationLease>> {
    let id: Option<String> = conn
        .query_row(
            "SELECT id FROM batches WHERE status IN ('validating', 'cancelling') AND in_progress_at IS NULL
               AND (lease_until IS NULL OR lease_until <= ?1) ORDER BY id LIMIT 1",
            [now.as_millis()],
            |row| row.get(0),
        )
        .optional()
        .map_err(store_error)?;
    let Some(id) = id else { return Ok(None) };
    conn.execute(
        "UPDATE batches SET lease_token = ?2, lease_until = ?3 WHERE id = ?1",
        params![id, token.0, lease_until.as_millis()],
    )
    .map_err(store_error)?;
    conn.execute("DELETE FROM batch_requests WHERE batch_id = ?1", [&id])
        .map_err(store_error)?;
    let batch = BatchId::parse(&id)
        .map(|id| load_batch(conn, id))
        .transpose()?
        .flatten()
        .ok_or_else(|| StoreError::Corrupt(format!("invalid batch id {id:?}")))?;
    Ok(Some(ValidationLease { batch, token }))
}

fn holds_validation(conn: &Connection, id: BatchId, token: LeaseToken) -> StoreResult<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM batches WHERE id = ?1 AND lease_token = ?2 AND in_progress_at IS NULL
                          AND status IN ('validating', 'cancelling'))",
        params![id.to_string(), token.0],
        |row| row.get(0),
    )
    .map_err(store_error)
}

pub(super) fn add_requests(
    conn: &Connection,
    id: BatchId,
    token: LeaseToken,
    requests: &[NewBatchRequest],
    now: Timestamp,
) -> StoreResult<AddOutcome> {
    if !holds_validation(conn, id, token)? {
        return Ok(AddOutcome::Stale);
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO batch_requests (batch_id, line, custom_id, upstream, body, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .map_err(store_error)?;
    let batch = id.to_string();
    for request in requests {
        let inserted = insert
            .execute(params![
                batch,
                request.line.cast_signed(),
                request.custom_id,
                request.upstream,
                request.body,
                now.as_millis()
            ])
            .map_err(store_error)?;
        if inserted == 0 {
            return Ok(AddOutcome::Duplicate {
                line: request.line,
                custom_id: request.custom_id.clone(),
            });
        }
    }
    Ok(AddOutcome::Added)
}

pub(super) fn finish_validation(
    conn: &Connection,
    id: BatchId,
    token: LeaseToken,
    result: &Validated,
    now: Timestamp,
) -> StoreResult<Option<bool>> {
    if !holds_validation(conn, id, token)? {
        return Ok(None);
    }
    let cancelled: bool = conn
        .query_row(
            "SELECT status = 'cancelling' FROM batches WHERE id = ?1",
            [id.to_string()],
            |row| row.get(0),
        )
        .map_err(store_error)?;
    let (_, delivered) = match result {
        Validated::Valid { .. } if cancelled => {
            conn.execute("DELETE FROM batch_requests WHERE batch_id = ?1", [id.to_string()])
                .map_err(store_error)?;
            change_status(conn, id, BatchStatus::Cancelled, now, "")?
        }
        Validated::Valid { total } => change_status(
            conn,
            id,
            BatchStatus::InProgress,
            now,
            &format!(", total = {}", total.cast_signed()),
        )?,
        Validated::Invalid(errors) => {
            conn.execute("DELETE FROM batch_requests WHERE batch_id = ?1", [id.to_string()])
                .map_err(store_error)?;
            let text = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
            conn.execute(
                "UPDATE batches SET errors = ?2 WHERE id = ?1",
                params![id.to_string(), text],
            )
            .map_err(store_error)?;
            change_status(conn, id, BatchStatus::Failed, now, "")?
        }
    };
    Ok(Some(delivered))
}

pub(super) fn claim_requests(
    conn: &Connection,
    claim: &RequestClaim,
    token: LeaseToken,
) -> StoreResult<Vec<RequestJob>> {
    let mut room: Vec<(String, usize)> = claim.room.iter().filter(|(_, room)| *room > 0).cloned().collect();
    if room.is_empty() {
        return Ok(Vec::new());
    }
    let batches: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT id, endpoint FROM batches WHERE status = 'in_progress' AND finish_kind IS NULL
             ORDER BY last_claim_at, id LIMIT ?1",
        )
        .and_then(|mut stmt| {
            stmt.query_map([claim.max_batches as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(store_error)?;
    // Equal shares: a lone batch may take the whole room.
    let per_batch = claim.per_batch.max(claim.limit.div_ceil(batches.len().max(1)));
    let mut select = conn
        .prepare_cached(
            "SELECT line, custom_id, body, attempts FROM batch_requests
             WHERE batch_id = ?1 AND upstream = ?2 AND state < 2 AND next_attempt_at <= ?3
             ORDER BY next_attempt_at, line LIMIT ?4",
        )
        .map_err(store_error)?;
    let mut lease = conn
        .prepare_cached(
            "UPDATE batch_requests SET state = 1, lease_token = ?3, next_attempt_at = ?4 WHERE batch_id = ?1 AND line = ?2",
        )
        .map_err(store_error)?;
    let mut served = conn
        .prepare_cached("UPDATE batches SET last_claim_at = ?2 WHERE id = ?1")
        .map_err(store_error)?;
    let mut jobs = Vec::new();
    for (batch, endpoint) in batches {
        let Some(batch_id) = BatchId::parse(&batch) else {
            return Err(StoreError::Corrupt(format!("invalid batch id {batch:?}")));
        };
        let mut took = 0;
        for (upstream, left) in &mut room {
            let want = (*left)
                .min(per_batch.saturating_sub(took))
                .min(claim.limit.saturating_sub(jobs.len()));
            if want == 0 {
                continue;
            }
            let rows: Vec<(i64, String, Vec<u8>, i64)> = select
                .query_map(
                    params![batch, upstream.as_str(), claim.now.as_millis(), want as i64],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .and_then(Iterator::collect)
                .map_err(store_error)?;
            for (line, custom_id, body, attempts) in rows {
                lease
                    .execute(params![batch, line, token.0, claim.lease_until.as_millis()])
                    .map_err(store_error)?;
                jobs.push(RequestJob {
                    batch_id,
                    line: line.max(0).cast_unsigned(),
                    custom_id,
                    upstream: upstream.clone(),
                    endpoint: endpoint.clone(),
                    body: Bytes::from(body),
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    token,
                });
                *left -= 1;
                took += 1;
            }
        }
        if took > 0 {
            served
                .execute(params![batch, claim.now.as_millis()])
                .map_err(store_error)?;
        }
        if room.iter().all(|(_, left)| *left == 0) {
            break;
        }
    }
    Ok(jobs)
}

pub(super) fn complete_requests(conn: &Connection, completions: &[RequestCompletion]) -> StoreResult<Vec<bool>> {
    let mut done = conn
        .prepare_cached(
            "UPDATE batch_requests SET state = 2, result = ?4, failed = ?5, lease_token = NULL, attempts = attempts + 1
             WHERE batch_id = ?1 AND line = ?2 AND lease_token = ?3 AND state = 1",
        )
        .map_err(store_error)?;
    let mut retry = conn
        .prepare_cached(
            "UPDATE batch_requests SET state = 0, next_attempt_at = ?4, lease_token = NULL, attempts = attempts + 1
             WHERE batch_id = ?1 AND line = ?2 AND lease_token = ?3 AND state = 1",
        )
        .map_err(store_error)?;
    let mut count = conn
        .prepare_cached("UPDATE batches SET completed = completed + ?2, failed = failed + ?3 WHERE id = ?1")
        .map_err(store_error)?;
    let mut results = Vec::with_capacity(completions.len());
    for completion in completions {
        let batch = completion.batch_id.to_string();
        let line = completion.line.cast_signed();
        let changed = match &completion.update {
            RequestUpdate::Done { line_bytes, failed } => {
                let changed = done
                    .execute(params![batch, line, completion.token.0, line_bytes, failed])
                    .map_err(store_error)?;
                if changed > 0 {
                    count
                        .execute(params![batch, i64::from(!failed), i64::from(*failed)])
                        .map_err(store_error)?;
                }
                changed
            }
            RequestUpdate::Retry { at } => retry
                .execute(params![batch, line, completion.token.0, at.as_millis()])
                .map_err(store_error)?,
        };
        results.push(changed > 0);
    }
    Ok(results)
}

pub(super) fn batches_to_finish(conn: &Connection, now: Timestamp) -> StoreResult<Vec<(BatchId, Finish)>> {
    let rows: Vec<(String, String, i64, bool, bool, Option<String>)> = conn
        .prepare_cached(
            "SELECT b.id, b.status, b.expires_at,
                    EXISTS (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.state < 2),
                    -- Only a cancelling batch waits for what is in flight; the
                    -- search scans the batch's unfinished rows, so it is not
                    -- made for running ones (that was quadratic in the batch).
                    CASE WHEN b.status = 'cancelling' THEN
                        EXISTS (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.state = 1
                                  AND r.next_attempt_at > ?1)
                    ELSE false END,
                    b.finish_kind
             FROM batches b WHERE b.status IN ('in_progress', 'cancelling', 'finalizing') AND b.in_progress_at IS NOT NULL",
        )
        .and_then(|mut stmt| {
            stmt.query_map([now.as_millis()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
            })?
            .collect()
        })
        .map_err(store_error)?;
    let mut ready = Vec::new();
    for (id, status, expires_at, unfinished, in_flight, kind) in rows {
        let id = BatchId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("invalid batch id {id:?}")))?;
        let status = BatchStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("invalid batch status {status:?}")))?;
        let finish = match kind.as_deref().map(Finish::parse) {
            Some(Some(under_way)) => Some(under_way),
            Some(None) => return Err(StoreError::Corrupt(format!("batch {id}: invalid finish_kind"))),
            None => Finish::decide(status, expires_at <= now.as_millis(), unfinished, in_flight),
        };
        ready.extend(finish.map(|finish| (id, finish)));
    }
    Ok(ready)
}

pub(super) fn finish_batch(
    conn: &Connection,
    id: BatchId,
    finish: Finish,
    now: Timestamp,
) -> StoreResult<Option<(FinishStep, bool)>> {
    let Some(batch) = load_batch(conn, id)? else {
        return Ok(None);
    };
    if batch.status.is_terminal() {
        return Ok(None);
    }
    type Cursor = (Option<String>, i64, i64, i64, i64, i64);
    let cursor = |conn: &Connection| -> StoreResult<Cursor> {
        conn.query_row(
            "SELECT finish_kind, finish_line, output_seq, error_seq, output_bytes, error_bytes FROM batches WHERE id = ?1",
            [id.to_string()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)),
        )
        .map_err(store_error)
    };
    let (mut kind, mut line, mut output_seq, mut error_seq, mut output_bytes, mut error_bytes) = cursor(conn)?;
    if kind.is_none() {
        // The first step: the result files (invisible until the last).
        let (output, errors) = (FileId::generate(), FileId::generate());
        for (file, purpose) in [(output, "batch_output"), (errors, "batch_error")] {
            begin_file(
                conn,
                &NewFile {
                    id: file,
                    project_id: batch.project_id,
                    purpose: purpose.into(),
                    filename: format!("{id}_{purpose}.jsonl"),
                    now,
                },
            )?;
        }
        conn.execute(
            "UPDATE batches SET finish_kind = ?2, output_file_id = ?3, error_file_id = ?4, finalizing_at = ?5,
                    status = CASE WHEN ?2 = 'completed' THEN 'finalizing' ELSE status END
             WHERE id = ?1",
            params![
                id.to_string(),
                finish.as_str(),
                output.to_string(),
                errors.to_string(),
                now.as_millis()
            ],
        )
        .map_err(store_error)?;
        (kind, line, output_seq, error_seq, output_bytes, error_bytes) = cursor(conn)?;
    }
    let finish = kind.as_deref().and_then(Finish::parse).unwrap_or(finish);
    let batch = load_batch(conn, id)?.ok_or(StoreError::NotFound)?;
    let (Some(output), Some(errors)) = (batch.output_file_id, batch.error_file_id) else {
        return Err(StoreError::Corrupt(format!(
            "batch {id} is finishing without result files"
        )));
    };
    let rows: Vec<ResultRow> = conn
        .prepare_cached(
            "SELECT line, custom_id, state, result, failed FROM batch_requests
             WHERE batch_id = ?1 AND line > ?2 ORDER BY line LIMIT ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![id.to_string(), line, FINISH_ROWS as i64], |row| {
                Ok(ResultRow {
                    line: row.get::<_, i64>(0)?.max(0).cast_unsigned(),
                    custom_id: row.get(1)?,
                    done: row.get::<_, i64>(2)? == 2,
                    result: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                    failed: row.get(4)?,
                })
            })?
            .collect()
        })
        .map_err(store_error)?;
    let piece = Piece::build(finish, rows);
    if !piece.output.is_empty() {
        append_chunk(
            conn,
            output,
            u32::try_from(output_seq).unwrap_or(u32::MAX),
            &piece.output,
        )?;
        output_seq += 1;
        output_bytes += piece.output.len() as i64;
    }
    if !piece.errors.is_empty() {
        append_chunk(
            conn,
            errors,
            u32::try_from(error_seq).unwrap_or(u32::MAX),
            &piece.errors,
        )?;
        error_seq += 1;
        error_bytes += piece.errors.len() as i64;
    }
    if let Some(last) = piece.last_line {
        line = last.cast_signed();
        conn.execute(
            "DELETE FROM batch_requests WHERE batch_id = ?1 AND line <= ?2",
            params![id.to_string(), line],
        )
        .map_err(store_error)?;
    }
    conn.execute(
        "UPDATE batches SET finish_line = ?2, output_seq = ?3, error_seq = ?4, output_bytes = ?5, error_bytes = ?6
         WHERE id = ?1",
        params![id.to_string(), line, output_seq, error_seq, output_bytes, error_bytes],
    )
    .map_err(store_error)?;
    if !piece.end {
        return Ok(Some((FinishStep::More, false)));
    }
    // The last step: keep the files that hold lines, then the final status.
    let mut kept = Vec::new();
    for (file, bytes) in [(output, output_bytes), (errors, error_bytes)] {
        if bytes == 0 {
            discard_file(conn, file)?;
            kept.push(None);
        } else {
            finish_file(conn, file, bytes.cast_unsigned())?;
            kept.push(Some(file));
        }
    }
    let files = format!(
        ", output_file_id = {}, error_file_id = {}",
        sql_text(kept[0]),
        sql_text(kept[1])
    );
    let (batch, delivered) = change_status(conn, id, finish.status(), now, &files)?;
    Ok(Some((FinishStep::Finished(Box::new(batch)), delivered)))
}

/// An id (made of `[a-z0-9_]` only) as an SQL literal.
fn sql_text(id: Option<FileId>) -> String {
    id.map_or_else(|| "NULL".to_owned(), |id| format!("'{id}'"))
}
