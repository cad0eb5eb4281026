//! SQL for projects and API keys.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parsed, store_error, timestamp};
use crate::domain::project::{ApiKey, Name, Project};
use crate::domain::{ApiKeyId, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::{Page, PageRequest, StoreError, StoreResult};

pub(super) fn insert_project(conn: &Connection, project: &Project) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO projects (id, name, create_time) VALUES (?1, ?2, ?3)")
        .and_then(|mut stmt| {
            stmt.execute(params![
                project.id.to_string(),
                project.name.as_str(),
                project.create_time.as_millis()
            ])
        })
        .map_err(store_error)?;
    Ok(())
}

fn project_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: parsed(row, 0, "project id", ProjectId::parse)?,
        name: Name::from_trusted(row.get(1)?),
        create_time: timestamp(row, 2)?,
    })
}

pub(super) fn list_projects(conn: &Connection, page: &PageRequest) -> StoreResult<Page<Project>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, name, create_time FROM projects WHERE id > ?1 ORDER BY id LIMIT ?2")
        .map_err(store_error)?;
    let items = stmt
        .query_map(
            params![page.after.as_deref().unwrap_or(""), page.size],
            project_from_row,
        )
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(store_error)?;
    Ok(page_of(items, page.size, |p| p.id.to_string()))
}

pub(super) fn get_project(conn: &Connection, id: ProjectId) -> StoreResult<Option<Project>> {
    conn.prepare_cached("SELECT id, name, create_time FROM projects WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id.to_string()], project_from_row).optional())
        .map_err(store_error)
}

pub(super) fn insert_api_key(conn: &Connection, key: &ApiKey, key_hash: &[u8; 32]) -> StoreResult<()> {
    if get_project(conn, key.project_id)?.is_none() {
        return Err(StoreError::NotFound);
    }
    conn.prepare_cached(
        "INSERT INTO api_keys (id, project_id, name, key_prefix, key_hash, create_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            key.id.to_string(),
            key.project_id.to_string(),
            key.name.as_ref().map(Name::as_str),
            key.key_prefix,
            &key_hash[..],
            key.create_time.as_millis(),
        ])
    })
    .map_err(store_error)?;
    Ok(())
}

pub(super) fn list_api_keys(conn: &Connection, project: ProjectId, page: &PageRequest) -> StoreResult<Page<ApiKey>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, project_id, name, key_prefix, create_time FROM api_keys
             WHERE project_id = ?1 AND revoke_time IS NULL AND id > ?2 ORDER BY id LIMIT ?3",
        )
        .map_err(store_error)?;
    let items = stmt
        .query_map(
            params![project.to_string(), page.after.as_deref().unwrap_or(""), page.size],
            |row| {
                Ok(ApiKey {
                    id: parsed(row, 0, "api key id", ApiKeyId::parse)?,
                    project_id: parsed(row, 1, "project id", ProjectId::parse)?,
                    name: row.get::<_, Option<String>>(2)?.map(Name::from_trusted),
                    key_prefix: row.get(3)?,
                    create_time: timestamp(row, 4)?,
                })
            },
        )
        .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>)
        .map_err(store_error)?;
    Ok(page_of(items, page.size, |key| key.id.to_string()))
}

pub(super) fn revoke_api_key(conn: &Connection, project: ProjectId, id: ApiKeyId, now: Timestamp) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE api_keys SET revoke_time = ?3 WHERE id = ?1 AND project_id = ?2 AND revoke_time IS NULL",
        )
        .and_then(|mut stmt| stmt.execute(params![id.to_string(), project.to_string(), now.as_millis()]))
        .map_err(store_error)?;
    Ok(changed > 0)
}

pub(super) fn find_api_key(conn: &Connection, key_hash: &[u8; 32]) -> StoreResult<Option<(ApiKeyId, ProjectId)>> {
    conn.prepare_cached("SELECT id, project_id FROM api_keys WHERE key_hash = ?1 AND revoke_time IS NULL")
        .and_then(|mut stmt| {
            stmt.query_row([&key_hash[..]], |row| {
                Ok((
                    parsed(row, 0, "api key id", ApiKeyId::parse)?,
                    parsed(row, 1, "project id", ProjectId::parse)?,
                ))
            })
            .optional()
        })
        .map_err(store_error)
}

/// Stores `candidate` as the admin key's hash unless one is stored; returns
/// the hash in force.
pub(super) fn init_admin_key_hash(conn: &Connection, candidate: &[u8; 32]) -> StoreResult<[u8; 32]> {
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES ('admin_key_sha256', ?1) ON CONFLICT (name) DO NOTHING",
    )
    .and_then(|mut stmt| stmt.execute([&candidate[..]]))
    .map_err(store_error)?;
    let stored: Vec<u8> = conn
        .prepare_cached("SELECT value FROM settings WHERE name = 'admin_key_sha256'")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(store_error)?;
    <[u8; 32]>::try_from(stored.as_slice())
        .map_err(|_| crate::store::StoreError::Corrupt("the stored admin key hash is not 32 bytes".into()))
}
