//! Replays on SQLite (see `store::replays`). A step is one writer job of
//! at most `SQLITE_CHUNK` deliveries examined, so a replay of a million
//! deliveries is thousands of short jobs between which publishes and
//! claims take their turn.

use rusqlite::{Connection, OptionalExtension, params};

use super::queue::lower_due_hint;
use super::rows::{parsed, parsed_opt, store_error, timestamp, timestamp_opt};
use crate::domain::{DeliveryId, ProjectId, ReplayId, Timestamp, WebhookId};
use crate::store::codec::page_of;
use crate::store::{
    CreatedReplay, NewReplay, Page, PageRequest, Progress, Replay, ReplayFilter, ReplayState, SQLITE_CHUNK,
    StoreResult, finished, start_cursor, wanted,
};

const COLUMNS: &str = "id, project_id, webhook_id, since, until, filter, state, examined, requeued, error, \
                       create_time, update_time, finish_time";

fn replay_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Replay> {
    Ok(Replay {
        id: parsed(row, 0, "replay id", ReplayId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        webhook_id: parsed(row, 2, "webhook id", WebhookId::parse)?,
        since: timestamp(row, 3)?,
        until: timestamp(row, 4)?,
        filter: parsed(row, 5, "replay filter", ReplayFilter::parse)?,
        state: parsed(row, 6, "replay state", ReplayState::parse)?,
        examined: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
        requeued: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        error: row.get(9)?,
        create_time: timestamp(row, 10)?,
        update_time: timestamp(row, 11)?,
        finish_time: timestamp_opt(row, 12)?,
    })
}

pub(super) fn create(conn: &Connection, new: &NewReplay) -> StoreResult<CreatedReplay> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1 AND project_id = ?2 AND delete_time IS NULL")
        .and_then(|mut stmt| {
            stmt.query_row([new.webhook_id.to_string(), new.project_id.to_string()], |row| {
                row.get(0)
            })
            .optional()
        })
        .map_err(store_error)?;
    if exists.is_none() {
        return Ok(CreatedReplay::WebhookNotFound);
    }
    let until = new.until.min(new.now);
    let overlapping: Option<Option<ReplayId>> = conn
        .prepare_cached(
            "SELECT id FROM replays WHERE webhook_id = ?1 AND state = 'running' AND since < ?3 AND until > ?2 LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(
                params![new.webhook_id.to_string(), new.since.as_millis(), until.as_millis()],
                |row| parsed_opt(row, 0, "replay id", ReplayId::parse),
            )
            .optional()
        })
        .map_err(store_error)?;
    if let Some(Some(id)) = overlapping {
        return Ok(CreatedReplay::Overlaps(id));
    }
    let scan_end: Option<String> = conn
        .prepare_cached("SELECT MAX(id) FROM deliveries WHERE webhook_id = ?1")
        .and_then(|mut stmt| stmt.query_row([new.webhook_id.to_string()], |row| row.get(0)))
        .map_err(store_error)?;
    conn.prepare_cached(
        "INSERT INTO replays (id, project_id, webhook_id, since, until, filter, state, cursor_id, scan_end,
                              create_time, update_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8, ?9, ?9)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            new.id.to_string(),
            new.project_id.to_string(),
            new.webhook_id.to_string(),
            new.since.as_millis(),
            until.as_millis(),
            new.filter.as_str(),
            start_cursor(new.since),
            scan_end.unwrap_or_default(),
            new.now.as_millis(),
        ])
    })
    .map_err(store_error)?;
    get(conn, new.project_id, new.id)?
        .map(CreatedReplay::Created)
        .ok_or_else(|| crate::store::StoreError::Corrupt("a replay just created is missing".into()))
}

pub(super) fn get(conn: &Connection, project: ProjectId, id: ReplayId) -> StoreResult<Option<Replay>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM replays WHERE id = ?1 AND project_id = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([id.to_string(), project.to_string()], replay_from_row)
            .optional()
    })
    .map_err(store_error)
}

pub(super) fn list(conn: &Connection, project: ProjectId, page: &PageRequest) -> StoreResult<Page<Replay>> {
    let items: Vec<Replay> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM replays WHERE project_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(params![project.to_string(), page.after, page.size], replay_from_row)?
                .collect()
        })
        .map_err(store_error)?;
    Ok(page_of(items, page.size, |r| r.id.to_string()))
}

/// One chunk of the least recently advanced running replay. The bool:
/// whether copies were queued (the caller wakes the dispatcher).
pub(super) fn step(conn: &Connection, now: Timestamp) -> StoreResult<(Progress, bool)> {
    type Head = (String, String, i64, i64, String, String, String);
    let head: Option<Head> = conn
        .prepare_cached(
            "SELECT id, webhook_id, since, until, filter, cursor_id, scan_end FROM replays
             WHERE state = 'running' ORDER BY update_time, id LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                ))
            })
            .optional()
        })
        .map_err(store_error)?;
    let Some((id, webhook, since, until, filter, cursor, scan_end)) = head else {
        return Ok((Progress::Done(0), false));
    };
    let filter = ReplayFilter::parse(&filter)
        .ok_or_else(|| crate::store::StoreError::Corrupt(format!("invalid replay filter {filter:?}")))?;
    let alive: Option<bool> = conn
        .prepare_cached("SELECT delete_time IS NULL FROM webhooks WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([&webhook], |row| row.get(0)).optional())
        .map_err(store_error)?;
    if alive != Some(true) {
        conn.prepare_cached(
            "UPDATE replays SET state = 'failed', error = 'the webhook was deleted', update_time = ?2, finish_time = ?2
             WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.execute(params![id, now.as_millis()]))
        .map_err(store_error)?;
        return Ok((Progress::More(0), false));
    }
    let chunk: Vec<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT id, state, create_time FROM deliveries INDEXED BY deliveries_by_webhook
             WHERE webhook_id = ?1 AND id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![webhook, cursor, scan_end, SQLITE_CHUNK as i64], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?
            .collect()
        })
        .map_err(store_error)?;
    let (since, until) = (Timestamp::from_millis(since), Timestamp::from_millis(until));
    let mut requeued = 0_i64;
    for (source, state, created) in &chunk {
        if !wanted(since, until, filter, Timestamp::from_millis(*created), state) {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at,
                                     create_time, replay_id)
             SELECT ?2, event_id, webhook_id, project_id, ?3, 'pending', ?3, ?3, ?4 FROM deliveries WHERE id = ?1",
        )
        .and_then(|mut stmt| stmt.execute(params![source, DeliveryId::generate().to_string(), now.as_millis(), id]))
        .map_err(store_error)?;
        requeued += 1;
    }
    if requeued > 0
        && let Some(webhook) = WebhookId::parse(&webhook)
    {
        lower_due_hint(conn, webhook, now)?;
    }
    let done = finished(chunk.len(), SQLITE_CHUNK);
    let next = chunk.last().map_or(cursor, |(source, _, _)| source.clone());
    conn.prepare_cached(
        "UPDATE replays SET cursor_id = ?2, examined = examined + ?3, requeued = requeued + ?4,
                update_time = ?5, state = CASE WHEN ?6 THEN 'succeeded' ELSE state END,
                finish_time = CASE WHEN ?6 THEN ?5 END
         WHERE id = ?1",
    )
    .and_then(|mut stmt| stmt.execute(params![id, next, chunk.len() as i64, requeued, now.as_millis(), done]))
    .map_err(store_error)?;
    Ok((Progress::More(u64::try_from(requeued).unwrap_or(0)), requeued > 0))
}

#[async_trait::async_trait]
impl crate::store::ReplayStore for super::SqliteStore {
    async fn create_replay(&self, replay: NewReplay) -> StoreResult<CreatedReplay> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| create(conn, &replay))
            .await
    }

    async fn get_replay(&self, project: ProjectId, id: ReplayId) -> StoreResult<Option<Replay>> {
        self.readers.read(move |conn| get(conn, project, id)).await
    }

    async fn list_replays(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<Replay>> {
        self.readers.read(move |conn| list(conn, project, &page)).await
    }

    async fn step_replays(&self, now: Timestamp) -> StoreResult<Progress> {
        let (progress, queued) = self
            .writer
            .write(super::writer::Lane::Api, SQLITE_CHUNK, move |conn| step(conn, now))
            .await?;
        if queued {
            self.work.notify_one();
        }
        Ok(progress)
    }
}
