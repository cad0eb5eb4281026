//! Retention on SQLite (see `store::retention`). Each step is one writer
//! job examining at most `PRUNE_EVENTS_PER_STEP` events.
//!
//! Space: SQLite (with the default `auto_vacuum = NONE`) puts the pages a
//! delete frees on the database's freelist and reuses them for later
//! inserts, so under a steady load the file stops growing once pruning
//! keeps pace with publishing; it does not shrink (run `VACUUM` offline
//! for that).

use rusqlite::{Connection, params};

use super::rows::{parsed, store_error, timestamp};
use crate::domain::{EventId, Timestamp};
use crate::store::{PRUNE_EVENTS_PER_STEP, PruneRequest, PruneStep, StoreResult};

pub(super) fn prune(conn: &Connection, request: &PruneRequest) -> StoreResult<PruneStep> {
    let (after_time, after_id) = request
        .after
        .map_or((i64::MIN, String::new()), |(t, id)| (t.as_millis(), id.to_string()));
    let before = request.before.as_millis();
    let examined: Vec<(Timestamp, EventId, bool)> = conn
        .prepare_cached(
            "SELECT e.timestamp, e.id, NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                         AND (d.next_attempt_at IS NOT NULL OR d.finish_time IS NULL OR d.finish_time >= ?3))
             FROM events e INDEXED BY events_by_time
             WHERE (e.timestamp, e.id) > (?1, ?2) AND e.timestamp < ?3
             ORDER BY e.timestamp, e.id LIMIT ?4",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![after_time, after_id, before, PRUNE_EVENTS_PER_STEP as i64],
                |row| {
                    Ok((
                        timestamp(row, 0)?,
                        parsed(row, 1, "event id", EventId::parse)?,
                        row.get(2)?,
                    ))
                },
            )?
            .collect()
        })
        .map_err(store_error)?;
    let mut deleted = 0;
    for (_, id, prunable) in &examined {
        if !prunable {
            continue;
        }
        let id = id.to_string();
        conn.prepare_cached(
            "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ?1)",
        )
        .and_then(|mut stmt| stmt.execute([&id]))
        .map_err(store_error)?;
        conn.prepare_cached("DELETE FROM deliveries WHERE event_id = ?1")
            .and_then(|mut stmt| stmt.execute([&id]))
            .map_err(store_error)?;
        conn.prepare_cached("DELETE FROM events WHERE id = ?1")
            .and_then(|mut stmt| stmt.execute([&id]))
            .map_err(store_error)?;
        deleted += 1;
    }
    let next = if examined.len() < PRUNE_EVENTS_PER_STEP {
        None
    } else {
        examined.last().map(|(t, id, _)| (*t, *id))
    };
    Ok(PruneStep { deleted, next })
}

#[async_trait::async_trait]
impl crate::store::RetentionStore for super::SqliteStore {
    async fn prune_events(&self, request: PruneRequest) -> StoreResult<PruneStep> {
        self.writer
            .write(super::writer::Lane::Api, PRUNE_EVENTS_PER_STEP, move |conn| {
                prune(conn, &request)
            })
            .await
    }
}
