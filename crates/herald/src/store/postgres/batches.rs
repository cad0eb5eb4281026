//! SQL for files (chunked) and batches (rows, requests, their leases) on
//! PostgreSQL. Claims take requests with `FOR UPDATE SKIP LOCKED`, so
//! nodes never lease one request twice; completions are one `UNNEST`
//! statement per kind, fenced by each lease's token.

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::connect::store_error;
use super::events::{Fanned, publish_within_to};
use super::job_webhooks;
use super::rows::{get, parsed, parsed_opt, timestamp, timestamp_opt};
use crate::domain::batch::{self, Batch, BatchError, BatchStatus, BatchWebhooks, RequestCounts};
use crate::domain::{BatchId, FileId, ProjectId, Timestamp};
use crate::store::batches::{
    AddOutcome, CancelOutcome, FINISH_ROWS, FileRecord, Finish, FinishStep, ListPage, NewBatch, NewBatchRequest,
    NewFile, Piece, RequestClaim, RequestCompletion, RequestJob, RequestUpdate, ResultRow, Validated, ValidationLease,
};
use crate::store::{LeaseToken, PublishRequest, StoreError, StoreResult};

/// Ends the batch leases `node` holds (it died, restarted or stopped):
/// its requests are due at once and its validations reclaimable. Called in
/// the transaction that ends its delivery leases. A request that was in
/// flight may be sent twice; its `Idempotency-Key` lets the upstream tell.
pub(super) async fn end_node_leases(client: &impl GenericClient, node: &str) -> StoreResult<u64> {
    let requests = client
        .execute(
            "UPDATE batch_requests SET state = 0, next_attempt_at = 0, lease_token = NULL, lease_node = NULL
             WHERE lease_node = $1 AND state = 1",
            &[&node],
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            "UPDATE batches SET lease_until = NULL, lease_token = NULL, lease_node = NULL WHERE lease_node = $1",
            &[&node],
        )
        .await
        .map_err(store_error)?;
    Ok(requests)
}

const FILE_COLUMNS: &str = "id, project_id, purpose, filename, bytes, create_time";

fn file_from_row(row: &Row) -> StoreResult<FileRecord> {
    Ok(FileRecord {
        id: parsed(row, 0, "file id", FileId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        purpose: get(row, 2)?,
        filename: get(row, 3)?,
        bytes: get::<i64>(row, 4)?.max(0).cast_unsigned(),
        created_at: timestamp(row, 5)?,
    })
}

pub(super) async fn begin_file(client: &impl GenericClient, file: &NewFile) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO files (id, project_id, purpose, filename, create_time) VALUES ($1, $2, $3, $4, $5)",
            &[
                &file.id.to_string(),
                &file.project_id.to_string(),
                &file.purpose,
                &file.filename,
                &file.now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

pub(super) async fn append_chunk(client: &impl GenericClient, id: FileId, seq: u32, data: &[u8]) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO file_chunks (file_id, seq, data) VALUES ($1, $2, $3)",
            &[&id.to_string(), &i64::from(seq), &data],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

pub(super) async fn finish_file(client: &impl GenericClient, id: FileId, bytes: u64) -> StoreResult<FileRecord> {
    let row = client
        .query_opt(
            &format!("UPDATE files SET ready = true, bytes = $2 WHERE id = $1 RETURNING {FILE_COLUMNS}"),
            &[&id.to_string(), &bytes.cast_signed()],
        )
        .await
        .map_err(store_error)?
        .ok_or(StoreError::NotFound)?;
    file_from_row(&row)
}

pub(super) async fn discard_file(client: &impl GenericClient, id: FileId) -> StoreResult<()> {
    client
        .execute("DELETE FROM file_chunks WHERE file_id = $1", &[&id.to_string()])
        .await
        .map_err(store_error)?;
    client
        .execute("DELETE FROM files WHERE id = $1", &[&id.to_string()])
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Abandoned uploads deleted per call.
const PRUNE_FILES: i64 = 100;

pub(super) async fn prune_abandoned_uploads(
    tx: &Transaction<'_>,
    before: Timestamp,
) -> StoreResult<crate::store::Progress> {
    let rows = tx
        .query(
            "SELECT id FROM files WHERE NOT ready AND create_time < $1
               AND id NOT IN (SELECT output_file_id FROM batches WHERE finish_kind IS NOT NULL AND output_file_id IS NOT NULL)
               AND id NOT IN (SELECT error_file_id FROM batches WHERE finish_kind IS NOT NULL AND error_file_id IS NOT NULL)
             LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&before.as_millis(), &PRUNE_FILES],
        )
        .await
        .map_err(store_error)?;
    let ids: Vec<String> = rows.iter().map(|row| get(row, 0)).collect::<StoreResult<_>>()?;
    tx.execute("DELETE FROM file_chunks WHERE file_id = ANY($1)", &[&ids])
        .await
        .map_err(store_error)?;
    tx.execute("DELETE FROM files WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(store_error)?;
    let count = ids.len() as u64;
    Ok(if (ids.len() as i64) < PRUNE_FILES {
        crate::store::Progress::Done(count)
    } else {
        crate::store::Progress::More(count)
    })
}

pub(super) async fn delete_file(client: &impl GenericClient, project: ProjectId, id: FileId) -> StoreResult<bool> {
    let exists = get_file(client, project, id).await?.is_some();
    if exists {
        discard_file(client, id).await?;
    }
    Ok(exists)
}

pub(super) async fn list_files(
    client: &impl GenericClient,
    project: ProjectId,
    after: Option<FileId>,
    limit: u32,
) -> StoreResult<ListPage<FileRecord>> {
    let after = after.map_or_else(|| "~".to_owned(), |id| id.to_string());
    let rows = client
        .query(
            &format!(
                "SELECT {FILE_COLUMNS} FROM files WHERE project_id = $1 AND ready AND id < $2 ORDER BY id DESC LIMIT $3"
            ),
            &[&project.to_string(), &after, &(i64::from(limit) + 1)],
        )
        .await
        .map_err(store_error)?;
    let mut items = rows.iter().map(file_from_row).collect::<StoreResult<Vec<_>>>()?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(ListPage { items, has_more })
}

pub(super) async fn get_file(
    client: &impl GenericClient,
    project: ProjectId,
    id: FileId,
) -> StoreResult<Option<FileRecord>> {
    let row = client
        .query_opt(
            &format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1 AND project_id = $2 AND ready"),
            &[&id.to_string(), &project.to_string()],
        )
        .await
        .map_err(store_error)?;
    row.as_ref().map(file_from_row).transpose()
}

pub(super) async fn file_chunk(client: &impl GenericClient, id: FileId, seq: u32) -> StoreResult<Option<Bytes>> {
    let row = client
        .query_opt(
            "SELECT data FROM file_chunks WHERE file_id = $1 AND seq = $2",
            &[&id.to_string(), &i64::from(seq)],
        )
        .await
        .map_err(store_error)?;
    row.map(|row| get::<Vec<u8>>(&row, 0).map(Bytes::from)).transpose()
}

const BATCH_COLUMNS: &str = "id, project_id, input_file_id, endpoint, completion_window_ms, status, sequence, total, \
     completed, failed, errors, metadata, output_file_id, error_file_id, created_at, in_progress_at, expires_at, \
     finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, webhook_config";

fn batch_from_row(row: &Row) -> StoreResult<Batch> {
    let errors: Option<String> = get(row, 10)?;
    let count = |index| get::<i64>(row, index).map(|v| v.max(0).cast_unsigned());
    Ok(Batch {
        id: parsed(row, 0, "batch id", BatchId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        input_file_id: parsed(row, 2, "file id", FileId::parse)?,
        endpoint: get(row, 3)?,
        completion_window: std::time::Duration::from_millis(get::<i64>(row, 4)?.max(0).cast_unsigned()),
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
        metadata: get(row, 11)?,
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

async fn load_batch(client: &impl GenericClient, id: BatchId, lock: bool) -> StoreResult<Option<Batch>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = client
        .query_opt(
            &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1{lock}"),
            &[&id.to_string()],
        )
        .await
        .map_err(store_error)?;
    row.as_ref().map(batch_from_row).transpose()
}

pub(super) async fn create_batch(client: &impl GenericClient, batch: &NewBatch) -> StoreResult<Batch> {
    let window = i64::try_from(batch.completion_window.as_millis()).unwrap_or(i64::MAX);
    let mut webhooks = batch.webhooks.clone();
    if let Some(webhooks) = &mut webhooks {
        webhooks.job.webhook_ids = job_webhooks::attach(
            client,
            batch.project_id,
            &batch.id.to_string(),
            webhooks.job.format,
            &batch.webhook_uris,
            batch.now,
        )
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    }
    let webhook_config = BatchWebhooks::to_column(webhooks.as_ref());
    let inserted = client
        .execute(
            "INSERT INTO batches (id, project_id, input_file_id, endpoint, completion_window_ms, status, metadata,
                                  created_at, expires_at, webhook_config)
             SELECT $1, $2, $3, $4, $5, 'validating', $6, $7, $8, $9
             WHERE EXISTS (SELECT 1 FROM files WHERE id = $3 AND project_id = $2 AND ready)",
            &[
                &batch.id.to_string(),
                &batch.project_id.to_string(),
                &batch.input_file_id.to_string(),
                &batch.endpoint,
                &window,
                &batch.metadata,
                &batch.now.as_millis(),
                &batch.now.saturating_add(batch.completion_window).as_millis(),
                &webhook_config,
            ],
        )
        .await
        .map_err(store_error)?;
    if inserted == 0 {
        return Err(StoreError::NotFound);
    }
    load_batch(client, batch.id, false).await?.ok_or(StoreError::NotFound)
}

pub(super) async fn get_batch(
    client: &impl GenericClient,
    project: ProjectId,
    id: BatchId,
) -> StoreResult<Option<Batch>> {
    Ok(load_batch(client, id, false)
        .await?
        .filter(|batch| batch.project_id == project))
}

pub(super) async fn list_batches(
    client: &impl GenericClient,
    project: ProjectId,
    after: Option<BatchId>,
    limit: u32,
) -> StoreResult<ListPage<Batch>> {
    let after = after.map_or_else(|| "~".to_owned(), |id| id.to_string());
    let rows = client
        .query(
            &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE project_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"),
            &[&project.to_string(), &after, &(i64::from(limit) + 1)],
        )
        .await
        .map_err(store_error)?;
    let mut items = rows.iter().map(batch_from_row).collect::<StoreResult<Vec<_>>>()?;
    let has_more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(ListPage { items, has_more })
}

pub(super) async fn cancel_batch(
    tx: &Transaction<'_>,
    project: ProjectId,
    id: BatchId,
    now: Timestamp,
) -> StoreResult<Option<CancelOutcome>> {
    let Some(batch) = load_batch(tx, id, true).await?.filter(|b| b.project_id == project) else {
        return Ok(None);
    };
    match batch.status {
        BatchStatus::Validating | BatchStatus::InProgress => {
            tx.execute(
                "UPDATE batches SET status = 'cancelling', cancelling_at = $2 WHERE id = $1",
                &[&id.to_string(), &now.as_millis()],
            )
            .await
            .map_err(store_error)?;
            Ok(load_batch(tx, id, false)
                .await?
                .map(|b| CancelOutcome::Cancelling(Box::new(b))))
        }
        BatchStatus::Cancelling => Ok(Some(CancelOutcome::Cancelling(Box::new(batch)))),
        status => Ok(Some(CancelOutcome::Finished(status))),
    }
}

/// Sets the batch's new status (with its `*_at`), counts the event in
/// `sequence` and publishes it within `tx`; pass the [`Fanned`] to the
/// publisher after the commit.
async fn change_status(
    tx: &Transaction<'_>,
    id: BatchId,
    status: BatchStatus,
    now: Timestamp,
    extra_sql: &str,
) -> StoreResult<(Batch, Fanned)> {
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
    tx.execute(
        &format!(
            "UPDATE batches SET status = $2, {column} = $3, sequence = sequence + $4, lease_token = NULL,
                    lease_until = NULL, lease_node = NULL {extra_sql} WHERE id = $1"
        ),
        &[&id.to_string(), &status.as_str(), &now.as_millis(), &bump],
    )
    .await
    .map_err(store_error)?;
    let batch = load_batch(tx, id, false).await?.ok_or(StoreError::NotFound)?;
    let mut fanned = Fanned::default();
    if let Some(event) = batch::status_event(&batch, now) {
        let request = PublishRequest {
            project_id: batch.project_id,
            events: vec![event],
            idempotency: None,
            now,
            max_deliveries: usize::MAX,
        };
        fanned = publish_within_to(tx, &request, BatchWebhooks::job_of(&batch)).await?.1;
    }
    Ok((batch, fanned))
}

/// Progress events published per call at most.
const PROGRESS_BATCHES: i64 = 100;

pub(super) async fn publish_progress(
    tx: &Transaction<'_>,
    now: Timestamp,
    interval: std::time::Duration,
) -> StoreResult<Vec<Fanned>> {
    let since = now.as_millis() - i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "UPDATE batches SET progress_at = $3, progress_done = completed + failed, sequence = sequence + 1
             WHERE id IN (SELECT id FROM batches WHERE status = 'in_progress' AND finish_kind IS NULL
                            AND completed + failed <> progress_done
                            AND (progress_at IS NULL OR progress_at <= $1) LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id",
            &[&since, &PROGRESS_BATCHES, &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let mut fanned = Vec::with_capacity(rows.len());
    for row in &rows {
        let id = parsed(row, 0, "batch id", BatchId::parse)?;
        let batch = load_batch(tx, id, false).await?.ok_or(StoreError::NotFound)?;
        if let Some(event) = batch::progress_event(&batch, now) {
            let request = PublishRequest {
                project_id: batch.project_id,
                events: vec![event],
                idempotency: None,
                now,
                max_deliveries: usize::MAX,
            };
            fanned.push(publish_within_to(tx, &request, BatchWebhooks::job_of(&batch)).await?.1);
        }
    }
    Ok(fanned)
}

pub(super) async fn claim_validation(
    tx: &Transaction<'_>,
    now: Timestamp,
    lease_until: Timestamp,
    token: LeaseToken,
    node: &str,
) -> StoreResult<Option<ValidationLease>> {
    let row = tx
        .query_opt(
            "SELECT id FROM batches WHERE status IN ('validating', 'cancelling') AND in_progress_at IS NULL
               AND (lease_until IS NULL OR lease_until <= $1) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let id: String = get(&row, 0)?;
    tx.execute(
        "UPDATE batches SET lease_token = $2, lease_until = $3, lease_node = $4 WHERE id = $1",
        &[&id, &token.0, &lease_until.as_millis(), &node],
    )
    .await
    .map_err(store_error)?;
    tx.execute("DELETE FROM batch_requests WHERE batch_id = $1", &[&id])
        .await
        .map_err(store_error)?;
    let id = BatchId::parse(&id).ok_or_else(|| StoreError::Corrupt(format!("invalid batch id {id:?}")))?;
    let batch = load_batch(tx, id, false).await?.ok_or(StoreError::NotFound)?;
    Ok(Some(ValidationLease { batch, token }))
}

async fn holds_validation(client: &impl GenericClient, id: BatchId, token: LeaseToken) -> StoreResult<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE id = $1 AND lease_token = $2 AND in_progress_at IS NULL
                              AND status IN ('validating', 'cancelling'))",
            &[&id.to_string(), &token.0],
        )
        .await
        .map_err(store_error)?;
    get(&row, 0)
}

pub(super) async fn add_requests(
    tx: &Transaction<'_>,
    id: BatchId,
    token: LeaseToken,
    requests: &[NewBatchRequest],
) -> StoreResult<AddOutcome> {
    if !holds_validation(tx, id, token).await? {
        return Ok(AddOutcome::Stale);
    }
    let lines: Vec<i64> = requests.iter().map(|r| r.line.cast_signed()).collect();
    let custom_ids: Vec<&str> = requests.iter().map(|r| r.custom_id.as_str()).collect();
    let upstreams: Vec<&str> = requests.iter().map(|r| r.upstream.as_str()).collect();
    let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_slice()).collect();
    let rows = tx
        .query(
            "INSERT INTO batch_requests (batch_id, line, custom_id, upstream, body, next_attempt_at)
             SELECT $1, u.line, u.custom_id, u.upstream, u.body, 0
             FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::bytea[]) AS u(line, custom_id, upstream, body)
             ORDER BY u.line
             ON CONFLICT DO NOTHING RETURNING line",
            &[&id.to_string(), &lines, &custom_ids, &upstreams, &bodies],
        )
        .await
        .map_err(store_error)?;
    if rows.len() == requests.len() {
        return Ok(AddOutcome::Added);
    }
    let inserted: std::collections::HashSet<i64> =
        rows.iter().map(|row| get::<i64>(row, 0)).collect::<StoreResult<_>>()?;
    let duplicate = requests
        .iter()
        .find(|r| !inserted.contains(&r.line.cast_signed()))
        .ok_or_else(|| StoreError::Corrupt("an insert skipped no line yet reported fewer rows".into()))?;
    Ok(AddOutcome::Duplicate {
        line: duplicate.line,
        custom_id: duplicate.custom_id.clone(),
    })
}

pub(super) async fn finish_validation(
    tx: &Transaction<'_>,
    id: BatchId,
    token: LeaseToken,
    result: &Validated,
    now: Timestamp,
) -> StoreResult<Option<Fanned>> {
    let Some(batch) = load_batch(tx, id, true).await? else {
        return Ok(None);
    };
    if !holds_validation(tx, id, token).await? {
        return Ok(None);
    }
    let drop_requests = async || {
        tx.execute("DELETE FROM batch_requests WHERE batch_id = $1", &[&id.to_string()])
            .await
            .map_err(store_error)
    };
    let (_, fanned) = match result {
        Validated::Valid { .. } if batch.status == BatchStatus::Cancelling => {
            drop_requests().await?;
            change_status(tx, id, BatchStatus::Cancelled, now, "").await?
        }
        Validated::Valid { total } => {
            let extra = format!(", total = {}", total.cast_signed());
            change_status(tx, id, BatchStatus::InProgress, now, &extra).await?
        }
        Validated::Invalid(errors) => {
            drop_requests().await?;
            let text = serde_json::to_string(errors).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "UPDATE batches SET errors = $2 WHERE id = $1",
                &[&id.to_string(), &text],
            )
            .await
            .map_err(store_error)?;
            change_status(tx, id, BatchStatus::Failed, now, "").await?
        }
    };
    Ok(Some(fanned))
}

pub(super) async fn claim_requests(
    tx: &Transaction<'_>,
    claim: &RequestClaim,
    token: LeaseToken,
    node: &str,
) -> StoreResult<Vec<RequestJob>> {
    let mut room: Vec<(String, usize)> = claim.room.iter().filter(|(_, room)| *room > 0).cloned().collect();
    if room.is_empty() {
        return Ok(Vec::new());
    }
    let batches = tx
        .query(
            "SELECT id, endpoint FROM batches WHERE status = 'in_progress' AND finish_kind IS NULL
             ORDER BY last_claim_at, id LIMIT $1",
            &[&(claim.max_batches as i64)],
        )
        .await
        .map_err(store_error)?;
    // Equal shares: a lone batch may take the whole room.
    let per_batch = claim.per_batch.max(claim.limit.div_ceil(batches.len().max(1)));
    let take = tx
        .prepare_cached(
            "WITH due AS (
                SELECT line FROM batch_requests
                WHERE batch_id = $1 AND upstream = $2 AND state < 2 AND next_attempt_at <= $3
                ORDER BY next_attempt_at, line LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE batch_requests r SET state = 1, lease_token = $5, next_attempt_at = $6, lease_node = $7
             FROM due WHERE r.batch_id = $1 AND r.line = due.line
             RETURNING r.line, r.custom_id, r.body, r.attempts",
        )
        .await
        .map_err(store_error)?;
    let mut jobs = Vec::new();
    for row in &batches {
        let batch: String = get(row, 0)?;
        let endpoint: String = get(row, 1)?;
        let batch_id =
            BatchId::parse(&batch).ok_or_else(|| StoreError::Corrupt(format!("invalid batch id {batch:?}")))?;
        // Lock order, everywhere: the batch row, then its request rows (so
        // a claim never deadlocks with a finish or a completion). A batch
        // locked by another node is served by that node this time.
        let served = tx
            .query_opt(
                "UPDATE batches SET last_claim_at = $2 WHERE id = (
                    SELECT id FROM batches WHERE id = $1 AND status = 'in_progress' AND finish_kind IS NULL
                    FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[&batch, &claim.now.as_millis()],
            )
            .await
            .map_err(store_error)?;
        if served.is_none() {
            continue;
        }
        let mut took = 0;
        for (upstream, left) in &mut room {
            let want = (*left)
                .min(per_batch.saturating_sub(took))
                .min(claim.limit.saturating_sub(jobs.len()));
            if want == 0 {
                continue;
            }
            let rows = tx
                .query(
                    &take,
                    &[
                        &batch,
                        &upstream.as_str(),
                        &claim.now.as_millis(),
                        &(want as i64),
                        &token.0,
                        &claim.lease_until.as_millis(),
                        &node,
                    ],
                )
                .await
                .map_err(store_error)?;
            let mut taken = Vec::with_capacity(rows.len());
            for row in &rows {
                taken.push(RequestJob {
                    batch_id,
                    line: get::<i64>(row, 0)?.max(0).cast_unsigned(),
                    custom_id: get(row, 1)?,
                    upstream: upstream.clone(),
                    endpoint: endpoint.clone(),
                    body: Bytes::from(get::<Vec<u8>>(row, 2)?),
                    attempts: u32::try_from(get::<i64>(row, 3)?).unwrap_or(u32::MAX),
                    token,
                });
            }
            taken.sort_by_key(|job| job.line);
            *left -= taken.len();
            took += taken.len();
            jobs.extend(taken);
        }
        if room.iter().all(|(_, left)| *left == 0) {
            break;
        }
    }
    Ok(jobs)
}

pub(super) async fn complete_requests(
    tx: &Transaction<'_>,
    completions: &[RequestCompletion],
) -> StoreResult<Vec<bool>> {
    let mut done = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut retry = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in completions {
        match &c.update {
            RequestUpdate::Done { line_bytes, failed } => {
                done.0.push(c.batch_id.to_string());
                done.1.push(c.line.cast_signed());
                done.2.push(c.token.0);
                done.3.push(line_bytes.as_slice());
                done.4.push(*failed);
            }
            RequestUpdate::Retry { at } => {
                retry.0.push(c.batch_id.to_string());
                retry.1.push(c.line.cast_signed());
                retry.2.push(c.token.0);
                retry.3.push(at.as_millis());
            }
        }
    }
    // Lock order: the batch rows first (see `claim_requests`).
    let mut batch_ids: Vec<String> = completions.iter().map(|c| c.batch_id.to_string()).collect();
    batch_ids.sort();
    batch_ids.dedup();
    tx.execute(
        "SELECT 1 FROM batches WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&batch_ids],
    )
    .await
    .map_err(store_error)?;
    let mut changed = std::collections::HashSet::new();
    if !done.0.is_empty() {
        let rows = tx
            .query(
                "UPDATE batch_requests r SET state = 2, result = u.result, failed = u.failed, lease_token = NULL, lease_node = NULL,
                        attempts = r.attempts + 1
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bool[])
                      AS u(batch_id, line, token, result, failed)
                 WHERE r.batch_id = u.batch_id AND r.line = u.line AND r.lease_token = u.token AND r.state = 1
                 RETURNING r.batch_id, r.line, r.failed",
                &[&done.0, &done.1, &done.2, &done.3, &done.4],
            )
            .await
            .map_err(store_error)?;
        let mut counts: std::collections::HashMap<String, (i64, i64)> = std::collections::HashMap::new();
        for row in &rows {
            let batch: String = get(row, 0)?;
            let line: i64 = get(row, 1)?;
            let failed: bool = get(row, 2)?;
            let entry = counts.entry(batch.clone()).or_default();
            if failed {
                entry.1 += 1;
            } else {
                entry.0 += 1;
            }
            changed.insert((batch, line));
        }
        let mut ids: Vec<&String> = counts.keys().collect();
        ids.sort();
        for id in ids {
            let (completed, failed) = counts[id];
            tx.execute(
                "UPDATE batches SET completed = completed + $2, failed = failed + $3 WHERE id = $1",
                &[id, &completed, &failed],
            )
            .await
            .map_err(store_error)?;
        }
    }
    if !retry.0.is_empty() {
        let rows = tx
            .query(
                "UPDATE batch_requests r SET state = 0, next_attempt_at = u.at, lease_token = NULL, lease_node = NULL,
                        attempts = r.attempts + 1
                 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(batch_id, line, token, at)
                 WHERE r.batch_id = u.batch_id AND r.line = u.line AND r.lease_token = u.token AND r.state = 1
                 RETURNING r.batch_id, r.line",
                &[&retry.0, &retry.1, &retry.2, &retry.3],
            )
            .await
            .map_err(store_error)?;
        for row in &rows {
            changed.insert((get::<String>(row, 0)?, get::<i64>(row, 1)?));
        }
    }
    Ok(completions
        .iter()
        .map(|c| changed.contains(&(c.batch_id.to_string(), c.line.cast_signed())))
        .collect())
}

pub(super) async fn batches_to_finish(
    client: &impl GenericClient,
    now: Timestamp,
) -> StoreResult<Vec<(BatchId, Finish)>> {
    let rows = client
        .query(
            "SELECT b.id, b.status, b.expires_at,
                    EXISTS (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.state < 2),
                    -- Only a cancelling batch waits for what is in flight (see SQLite's).
                    CASE WHEN b.status = 'cancelling' THEN
                        EXISTS (SELECT 1 FROM batch_requests r WHERE r.batch_id = b.id AND r.state = 1
                                  AND r.next_attempt_at > $1)
                    ELSE false END,
                    b.finish_kind
             FROM batches b WHERE b.status IN ('in_progress', 'cancelling', 'finalizing') AND b.in_progress_at IS NOT NULL",
            &[&now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    let mut ready = Vec::new();
    for row in &rows {
        let id = parsed(row, 0, "batch id", BatchId::parse)?;
        let status = parsed(row, 1, "batch status", BatchStatus::parse)?;
        let expired = get::<i64>(row, 2)? <= now.as_millis();
        let finish = match get::<Option<String>>(row, 5)? {
            Some(kind) => Some(
                Finish::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("batch {id}: invalid finish_kind")))?,
            ),
            None => Finish::decide(status, expired, get(row, 3)?, get(row, 4)?),
        };
        if let Some(finish) = finish {
            ready.push((id, finish));
        }
    }
    Ok(ready)
}

pub(super) async fn finish_batch(
    tx: &Transaction<'_>,
    id: BatchId,
    finish: Finish,
    now: Timestamp,
) -> StoreResult<Option<(FinishStep, Fanned)>> {
    let Some(batch) = load_batch(tx, id, true).await? else {
        return Ok(None);
    };
    if batch.status.is_terminal() {
        return Ok(None);
    }
    let cursor_sql =
        "SELECT finish_kind, finish_line, output_seq, error_seq, output_bytes, error_bytes FROM batches WHERE id = $1";
    let mut cursor = tx
        .query_one(cursor_sql, &[&id.to_string()])
        .await
        .map_err(store_error)?;
    if get::<Option<String>>(&cursor, 0)?.is_none() {
        // The first step: the result files (invisible until the last).
        let (output, errors) = (FileId::generate(), FileId::generate());
        for (file, purpose) in [(output, "batch_output"), (errors, "batch_error")] {
            begin_file(
                tx,
                &NewFile {
                    id: file,
                    project_id: batch.project_id,
                    purpose: purpose.into(),
                    filename: format!("{id}_{purpose}.jsonl"),
                    now,
                },
            )
            .await?;
        }
        tx.execute(
            "UPDATE batches SET finish_kind = $2, output_file_id = $3, error_file_id = $4, finalizing_at = $5,
                    status = CASE WHEN $2 = 'completed' THEN 'finalizing' ELSE status END
             WHERE id = $1",
            &[
                &id.to_string(),
                &finish.as_str(),
                &output.to_string(),
                &errors.to_string(),
                &now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
        cursor = tx
            .query_one(cursor_sql, &[&id.to_string()])
            .await
            .map_err(store_error)?;
    }
    let kind: Option<String> = get(&cursor, 0)?;
    let finish = kind.as_deref().and_then(Finish::parse).unwrap_or(finish);
    let mut line: i64 = get(&cursor, 1)?;
    let (mut output_seq, mut error_seq): (i64, i64) = (get(&cursor, 2)?, get(&cursor, 3)?);
    let (mut output_bytes, mut error_bytes): (i64, i64) = (get(&cursor, 4)?, get(&cursor, 5)?);
    let batch = load_batch(tx, id, false).await?.ok_or(StoreError::NotFound)?;
    let (Some(output), Some(errors)) = (batch.output_file_id, batch.error_file_id) else {
        return Err(StoreError::Corrupt(format!(
            "batch {id} is finishing without result files"
        )));
    };
    let rows = tx
        .query(
            "SELECT line, custom_id, state, result, failed FROM batch_requests
             WHERE batch_id = $1 AND line > $2 ORDER BY line LIMIT $3",
            &[&id.to_string(), &line, &(FINISH_ROWS as i64)],
        )
        .await
        .map_err(store_error)?;
    let mut results = Vec::with_capacity(rows.len());
    for row in &rows {
        results.push(ResultRow {
            line: get::<i64>(row, 0)?.max(0).cast_unsigned(),
            custom_id: get(row, 1)?,
            done: get::<i64>(row, 2)? == 2,
            result: get::<Option<Vec<u8>>>(row, 3)?.unwrap_or_default(),
            failed: get(row, 4)?,
        });
    }
    drop(rows);
    let piece = Piece::build(finish, results);
    if !piece.output.is_empty() {
        append_chunk(tx, output, u32::try_from(output_seq).unwrap_or(u32::MAX), &piece.output).await?;
        output_seq += 1;
        output_bytes += piece.output.len() as i64;
    }
    if !piece.errors.is_empty() {
        append_chunk(tx, errors, u32::try_from(error_seq).unwrap_or(u32::MAX), &piece.errors).await?;
        error_seq += 1;
        error_bytes += piece.errors.len() as i64;
    }
    if let Some(last) = piece.last_line {
        line = last.cast_signed();
        tx.execute(
            "DELETE FROM batch_requests WHERE batch_id = $1 AND line <= $2",
            &[&id.to_string(), &line],
        )
        .await
        .map_err(store_error)?;
    }
    tx.execute(
        "UPDATE batches SET finish_line = $2, output_seq = $3, error_seq = $4, output_bytes = $5, error_bytes = $6
         WHERE id = $1",
        &[
            &id.to_string(),
            &line,
            &output_seq,
            &error_seq,
            &output_bytes,
            &error_bytes,
        ],
    )
    .await
    .map_err(store_error)?;
    if !piece.end {
        return Ok(Some((FinishStep::More, Fanned::default())));
    }
    // The last step: keep the files that hold lines, then the final status.
    let mut kept = Vec::new();
    for (file, bytes) in [(output, output_bytes), (errors, error_bytes)] {
        if bytes == 0 {
            discard_file(tx, file).await?;
            kept.push(None);
        } else {
            finish_file(tx, file, bytes.cast_unsigned()).await?;
            kept.push(Some(file));
        }
    }
    let literal = |id: Option<FileId>| id.map_or_else(|| "NULL".to_owned(), |id| format!("'{id}'"));
    let files = format!(
        ", output_file_id = {}, error_file_id = {}",
        literal(kept[0]),
        literal(kept[1])
    );
    let (batch, fanned) = change_status(tx, id, finish.status(), now, &files).await?;
    Ok(Some((FinishStep::Finished(Box::new(batch)), fanned)))
}
