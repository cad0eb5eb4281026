//! Event types on SQLite (see `store::event_types`): writes are writer
//! jobs (so a create's "exists?" check and its insert are one
//! transaction), reads go to the reader pool.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parsed, store_error, timestamp, timestamp_opt};
use crate::domain::event_type::EventTypeRecord;
use crate::domain::{EventType, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::{CreatedEventType, EventTypePatch, NewEventType, Page, PageRequest, StoreResult};

const COLUMNS: &str = "project_id, name, description, schema, archive_time, create_time, update_time";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<EventTypeRecord> {
    Ok(EventTypeRecord {
        project_id: parsed(row, 0, "project id", ProjectId::parse)?,
        name: parsed(row, 1, "event type", |text| EventType::parse(text).ok())?,
        description: row.get(2)?,
        schema: row.get(3)?,
        archive_time: timestamp_opt(row, 4)?,
        create_time: timestamp(row, 5)?,
        update_time: timestamp(row, 6)?,
    })
}

fn get(conn: &Connection, project: ProjectId, name: &EventType) -> StoreResult<Option<EventTypeRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM event_types WHERE project_id = ?1 AND name = ?2"
    ))
    .and_then(|mut stmt| {
        stmt.query_row([project.to_string(), name.as_str().to_owned()], record_from_row)
            .optional()
    })
    .map_err(store_error)
}

fn create(conn: &Connection, new: &NewEventType) -> StoreResult<CreatedEventType> {
    let project: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM projects WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([new.project_id.to_string()], |row| row.get(0))
                .optional()
        })
        .map_err(store_error)?;
    if project.is_none() {
        return Ok(CreatedEventType::ProjectNotFound);
    }
    // An archived row of the same name is replaced; an active one stays.
    let changed = conn
        .prepare_cached(
            "INSERT INTO event_types (project_id, name, description, schema, archive_time, create_time, update_time)
             VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?5)
             ON CONFLICT (project_id, name) DO UPDATE SET
                 description = excluded.description, schema = excluded.schema, archive_time = NULL,
                 create_time = excluded.create_time, update_time = excluded.update_time
             WHERE event_types.archive_time IS NOT NULL",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                new.project_id.to_string(),
                new.name.as_str(),
                new.description,
                new.schema,
                new.now.as_millis(),
            ])
        })
        .map_err(store_error)?;
    if changed == 0 {
        return Ok(CreatedEventType::Exists);
    }
    get(conn, new.project_id, &new.name)?
        .map(CreatedEventType::Created)
        .ok_or_else(|| crate::store::StoreError::Corrupt("an event type just created is missing".into()))
}

fn list(
    conn: &Connection,
    project: ProjectId,
    page: &PageRequest,
    show_archived: bool,
) -> StoreResult<Page<EventTypeRecord>> {
    let items: Vec<EventTypeRecord> = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM event_types
             WHERE project_id = ?1 AND (?2 IS NULL OR name > ?2) AND (?3 OR archive_time IS NULL)
             ORDER BY name LIMIT ?4"
        ))
        .and_then(|mut stmt| {
            stmt.query_map(
                params![project.to_string(), page.after, show_archived, page.size],
                record_from_row,
            )?
            .collect()
        })
        .map_err(store_error)?;
    Ok(page_of(items, page.size, |r| r.name.as_str().to_owned()))
}

fn update(
    conn: &Connection,
    project: ProjectId,
    name: &EventType,
    patch: &EventTypePatch,
    now: Timestamp,
) -> StoreResult<Option<EventTypeRecord>> {
    let Some(current) = get(conn, project, name)?.filter(|r| r.archive_time.is_none()) else {
        return Ok(None);
    };
    let updated = patch.applied_to(current, now);
    conn.prepare_cached(
        "UPDATE event_types SET description = ?3, schema = ?4, update_time = ?5 WHERE project_id = ?1 AND name = ?2",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            project.to_string(),
            name.as_str(),
            updated.description,
            updated.schema,
            now.as_millis(),
        ])
    })
    .map_err(store_error)?;
    Ok(Some(updated))
}

fn archive(conn: &Connection, project: ProjectId, name: &EventType, now: Timestamp) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE event_types SET archive_time = ?3, update_time = ?3
             WHERE project_id = ?1 AND name = ?2 AND archive_time IS NULL",
        )
        .and_then(|mut stmt| stmt.execute(params![project.to_string(), name.as_str(), now.as_millis()]))
        .map_err(store_error)?;
    Ok(changed > 0)
}

fn set_strict(conn: &Connection, project: ProjectId, strict: bool) -> StoreResult<bool> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM projects WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([project.to_string()], |row| row.get(0)).optional())
        .map_err(store_error)?;
    if exists.is_none() {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO event_type_settings (project_id, strict) VALUES (?1, ?2)
         ON CONFLICT (project_id) DO UPDATE SET strict = excluded.strict",
    )
    .and_then(|mut stmt| stmt.execute(params![project.to_string(), strict]))
    .map_err(store_error)?;
    Ok(true)
}

fn strict(conn: &Connection, project: ProjectId) -> StoreResult<bool> {
    let strict: Option<bool> = conn
        .prepare_cached("SELECT strict FROM event_type_settings WHERE project_id = ?1")
        .and_then(|mut stmt| stmt.query_row([project.to_string()], |row| row.get(0)).optional())
        .map_err(store_error)?;
    Ok(strict.unwrap_or(false))
}

#[async_trait::async_trait]
impl crate::store::EventTypeStore for super::SqliteStore {
    async fn create_event_type(&self, new: NewEventType) -> StoreResult<CreatedEventType> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| create(conn, &new))
            .await
    }

    async fn get_event_type(&self, project: ProjectId, name: EventType) -> StoreResult<Option<EventTypeRecord>> {
        self.readers.read(move |conn| get(conn, project, &name)).await
    }

    async fn list_event_types(
        &self,
        project: ProjectId,
        page: PageRequest,
        show_archived: bool,
    ) -> StoreResult<Page<EventTypeRecord>> {
        self.readers
            .read(move |conn| list(conn, project, &page, show_archived))
            .await
    }

    async fn update_event_type(
        &self,
        project: ProjectId,
        name: EventType,
        patch: EventTypePatch,
        now: Timestamp,
    ) -> StoreResult<Option<EventTypeRecord>> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| {
                update(conn, project, &name, &patch, now)
            })
            .await
    }

    async fn archive_event_type(&self, project: ProjectId, name: EventType, now: Timestamp) -> StoreResult<bool> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| {
                archive(conn, project, &name, now)
            })
            .await
    }

    async fn set_strict_event_types(&self, project: ProjectId, strict: bool) -> StoreResult<bool> {
        self.writer
            .write(super::writer::Lane::Api, 1, move |conn| {
                set_strict(conn, project, strict)
            })
            .await
    }

    async fn strict_event_types(&self, project: ProjectId) -> StoreResult<bool> {
        self.readers.read(move |conn| strict(conn, project)).await
    }
}
