//! SQL for projects, API keys and shared settings.

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::{get, parsed, timestamp};
use crate::domain::project::{ApiKey, Name, Project};
use crate::domain::{ApiKeyId, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::{Page, PageRequest, StoreError, StoreResult};

pub(super) async fn insert_project(client: &impl GenericClient, project: &Project) -> StoreResult<()> {
    let stmt = client
        .prepare_cached("INSERT INTO projects (id, name, create_time) VALUES ($1, $2, $3)")
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &project.id.to_string(),
                &project.name.as_str(),
                &project.create_time.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

fn project_from_row(row: &tokio_postgres::Row) -> StoreResult<Project> {
    Ok(Project {
        id: parsed(row, 0, "project id", ProjectId::parse)?,
        name: Name::from_trusted(get(row, 1)?),
        create_time: timestamp(row, 2)?,
    })
}

pub(super) async fn list_projects(client: &impl GenericClient, page: &PageRequest) -> StoreResult<Page<Project>> {
    let stmt = client
        .prepare_cached("SELECT id, name, create_time FROM projects WHERE id > $1 ORDER BY id LIMIT $2")
        .await
        .map_err(store_error)?;
    let rows = client
        .query(&stmt, &[&page.after.as_deref().unwrap_or(""), &i64::from(page.size)])
        .await
        .map_err(store_error)?;
    let items = rows.iter().map(project_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |p| p.id.to_string()))
}

pub(super) async fn get_project(client: &impl GenericClient, id: ProjectId) -> StoreResult<Option<Project>> {
    let stmt = client
        .prepare_cached("SELECT id, name, create_time FROM projects WHERE id = $1")
        .await
        .map_err(store_error)?;
    let row = client.query_opt(&stmt, &[&id.to_string()]).await.map_err(store_error)?;
    row.as_ref().map(project_from_row).transpose()
}

pub(super) async fn insert_api_key(client: &impl GenericClient, key: &ApiKey, key_hash: &[u8; 32]) -> StoreResult<()> {
    if get_project(client, key.project_id).await?.is_none() {
        return Err(StoreError::NotFound);
    }
    let stmt = client
        .prepare_cached(
            "INSERT INTO api_keys (id, project_id, name, key_prefix, key_hash, create_time) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &key.id.to_string(),
                &key.project_id.to_string(),
                &key.name.as_ref().map(Name::as_str),
                &key.key_prefix,
                &&key_hash[..],
                &key.create_time.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

pub(super) async fn list_api_keys(
    client: &impl GenericClient,
    project: ProjectId,
    page: &PageRequest,
) -> StoreResult<Page<ApiKey>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, project_id, name, key_prefix, create_time FROM api_keys
             WHERE project_id = $1 AND revoke_time IS NULL AND id > $2 ORDER BY id LIMIT $3",
        )
        .await
        .map_err(store_error)?;
    let rows = client
        .query(
            &stmt,
            &[
                &project.to_string(),
                &page.after.as_deref().unwrap_or(""),
                &i64::from(page.size),
            ],
        )
        .await
        .map_err(store_error)?;
    let items = rows
        .iter()
        .map(|row| {
            Ok(ApiKey {
                id: parsed(row, 0, "api key id", ApiKeyId::parse)?,
                project_id: parsed(row, 1, "project id", ProjectId::parse)?,
                name: get::<Option<String>>(row, 2)?.map(Name::from_trusted),
                key_prefix: get(row, 3)?,
                create_time: timestamp(row, 4)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |key| key.id.to_string()))
}

pub(super) async fn revoke_api_key(
    client: &impl GenericClient,
    project: ProjectId,
    id: ApiKeyId,
    now: Timestamp,
) -> StoreResult<bool> {
    let stmt = client
        .prepare_cached(
            "UPDATE api_keys SET revoke_time = $3 WHERE id = $1 AND project_id = $2 AND revoke_time IS NULL",
        )
        .await
        .map_err(store_error)?;
    let changed = client
        .execute(&stmt, &[&id.to_string(), &project.to_string(), &now.as_millis()])
        .await
        .map_err(store_error)?;
    Ok(changed > 0)
}

pub(super) async fn find_api_key(
    client: &impl GenericClient,
    key_hash: &[u8; 32],
) -> StoreResult<Option<(ApiKeyId, ProjectId)>> {
    let stmt = client
        .prepare_cached("SELECT id, project_id FROM api_keys WHERE key_hash = $1 AND revoke_time IS NULL")
        .await
        .map_err(store_error)?;
    let row = client.query_opt(&stmt, &[&&key_hash[..]]).await.map_err(store_error)?;
    row.map(|row| {
        Ok((
            parsed(&row, 0, "api key id", ApiKeyId::parse)?,
            parsed(&row, 1, "project id", ProjectId::parse)?,
        ))
    })
    .transpose()
}

/// Stores `candidate` as the admin key's hash unless one is stored (the
/// first node to start wins); returns the hash in force.
pub(super) async fn init_admin_key_hash(client: &impl GenericClient, candidate: &[u8; 32]) -> StoreResult<[u8; 32]> {
    client
        .execute(
            "INSERT INTO settings (name, value) VALUES ('admin_key_sha256', $1) ON CONFLICT (name) DO NOTHING",
            &[&&candidate[..]],
        )
        .await
        .map_err(store_error)?;
    let row = client
        .query_one("SELECT value FROM settings WHERE name = 'admin_key_sha256'", &[])
        .await
        .map_err(store_error)?;
    let stored: Vec<u8> = get(&row, 0)?;
    <[u8; 32]>::try_from(stored.as_slice())
        .map_err(|_| StoreError::Corrupt("the stored admin key hash is not 32 bytes".into()))
}
