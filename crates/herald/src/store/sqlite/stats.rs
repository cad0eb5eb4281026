//! Statistics rollup on SQLite (see `store::stats`).

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::store_error;
use crate::domain::{ProjectId, Timestamp, WebhookId};
use crate::store::{Completion, Progress, StatsCell, StoreResult, rollup};

/// Adds the batch's attempts to the rollup (in the completion's transaction).
pub(super) fn record(conn: &Connection, completions: &[Completion]) -> StoreResult<()> {
    for (key, count) in rollup(completions) {
        conn.prepare_cached(
            "INSERT INTO webhook_stats (webhook_id, minute, outcome, bucket, count) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (webhook_id, minute, outcome, bucket) DO UPDATE SET count = count + excluded.count",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                key.webhook_id.to_string(),
                key.minute,
                key.outcome,
                key.bucket,
                i64::try_from(count).unwrap_or(i64::MAX)
            ])
        })
        .map_err(store_error)?;
    }
    Ok(())
}

pub(super) fn read(
    conn: &Connection,
    project: ProjectId,
    webhook: WebhookId,
    since_minute: i64,
) -> StoreResult<Option<Vec<StatsCell>>> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1 AND project_id = ?2 AND delete_time IS NULL")
        .and_then(|mut stmt| {
            stmt.query_row([webhook.to_string(), project.to_string()], |row| row.get(0))
                .optional()
        })
        .map_err(store_error)?;
    if exists.is_none() {
        return Ok(None);
    }
    conn.prepare_cached(
        "SELECT minute, outcome, bucket, count FROM webhook_stats WHERE webhook_id = ?1 AND minute >= ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_map(params![webhook.to_string(), since_minute], |row| {
            Ok(StatsCell {
                minute: row.get(0)?,
                outcome: row.get(1)?,
                bucket: row.get(2)?,
                count: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            })
        })?
        .collect()
    })
    .map(Some)
    .map_err(store_error)
}

/// Cells deleted per call.
pub(super) const PRUNE_CHUNK: i64 = 5_000;

pub(super) fn prune(conn: &Connection, before: Timestamp) -> StoreResult<Progress> {
    let before_minute = crate::domain::stats::minute_of(before);
    let deleted = conn
        .prepare_cached(
            "DELETE FROM webhook_stats WHERE (webhook_id, minute, outcome, bucket) IN
                (SELECT webhook_id, minute, outcome, bucket FROM webhook_stats WHERE minute < ?1 LIMIT ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![before_minute, PRUNE_CHUNK]))
        .map_err(store_error)?;
    let deleted = u64::try_from(deleted).unwrap_or(0);
    Ok(if deleted < PRUNE_CHUNK as u64 {
        Progress::Done(deleted)
    } else {
        Progress::More(deleted)
    })
}

#[async_trait::async_trait]
impl crate::store::StatsStore for super::SqliteStore {
    async fn webhook_stats(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        since_minute: i64,
    ) -> StoreResult<Option<Vec<StatsCell>>> {
        self.readers
            .read(move |conn| read(conn, project, webhook, since_minute))
            .await
    }

    async fn prune_stats(&self, before: Timestamp) -> StoreResult<Progress> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| prune(conn, before))
            .await
    }
}
