//! Event types on PostgreSQL (see `store::event_types`). A patch reads the
//! row `FOR UPDATE`, applies `EventTypePatch::applied_to` and writes it in
//! one transaction, so two nodes patching one type at once never lose a
//! field; a create is one upsert that only an archived row lets through.

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::{get, parsed, timestamp, timestamp_opt};
use crate::domain::event_type::EventTypeRecord;
use crate::domain::{EventType, ProjectId, Timestamp};
use crate::store::codec::page_of;
use crate::store::{CreatedEventType, EventTypePatch, NewEventType, Page, PageRequest, StoreResult};

const COLUMNS: &str = "project_id, name, description, schema, archive_time, create_time, update_time";

fn record_from_row(row: &tokio_postgres::Row) -> StoreResult<EventTypeRecord> {
    Ok(EventTypeRecord {
        project_id: parsed(row, 0, "project id", ProjectId::parse)?,
        name: parsed(row, 1, "event type", |text| EventType::parse(text).ok())?,
        description: get(row, 2)?,
        schema: get(row, 3)?,
        archive_time: timestamp_opt(row, 4)?,
        create_time: timestamp(row, 5)?,
        update_time: timestamp(row, 6)?,
    })
}

async fn select(
    client: &impl GenericClient,
    project: ProjectId,
    name: &EventType,
    lock: bool,
) -> StoreResult<Option<EventTypeRecord>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM event_types WHERE project_id = $1 AND name = $2{lock}"),
            &[&project.to_string(), &name.as_str()],
        )
        .await
        .map_err(store_error)?
        .as_ref()
        .map(record_from_row)
        .transpose()
}

async fn create(client: &impl GenericClient, new: &NewEventType) -> StoreResult<CreatedEventType> {
    let project = client
        .query_opt("SELECT 1 FROM projects WHERE id = $1", &[&new.project_id.to_string()])
        .await
        .map_err(store_error)?;
    if project.is_none() {
        return Ok(CreatedEventType::ProjectNotFound);
    }
    let row = client
        .query_opt(
            &format!(
                "INSERT INTO event_types (project_id, name, description, schema, archive_time, create_time, update_time)
                 VALUES ($1, $2, $3, $4, NULL, $5, $5)
                 ON CONFLICT (project_id, name) DO UPDATE SET
                     description = excluded.description, schema = excluded.schema, archive_time = NULL,
                     create_time = excluded.create_time, update_time = excluded.update_time
                 WHERE event_types.archive_time IS NOT NULL
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.project_id.to_string(),
                &new.name.as_str(),
                &new.description,
                &new.schema,
                &new.now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    match row {
        Some(row) => Ok(CreatedEventType::Created(record_from_row(&row)?)),
        None => Ok(CreatedEventType::Exists),
    }
}

async fn list(
    client: &impl GenericClient,
    project: ProjectId,
    page: &PageRequest,
    show_archived: bool,
) -> StoreResult<Page<EventTypeRecord>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM event_types
                 WHERE project_id = $1 AND ($2::text IS NULL OR name COLLATE \"C\" > $2) AND ($3 OR archive_time IS NULL)
                 ORDER BY name COLLATE \"C\" LIMIT $4"
            ),
            &[&project.to_string(), &page.after, &show_archived, &i64::from(page.size)],
        )
        .await
        .map_err(store_error)?;
    let items = rows.iter().map(record_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |r| r.name.as_str().to_owned()))
}

#[async_trait::async_trait]
impl crate::store::EventTypeStore for super::PostgresStore {
    async fn create_event_type(&self, new: NewEventType) -> StoreResult<CreatedEventType> {
        create(&self.client().await?, &new).await
    }

    async fn get_event_type(&self, project: ProjectId, name: EventType) -> StoreResult<Option<EventTypeRecord>> {
        select(&self.client().await?, project, &name, false).await
    }

    async fn list_event_types(
        &self,
        project: ProjectId,
        page: PageRequest,
        show_archived: bool,
    ) -> StoreResult<Page<EventTypeRecord>> {
        list(&self.client().await?, project, &page, show_archived).await
    }

    async fn update_event_type(
        &self,
        project: ProjectId,
        name: EventType,
        patch: EventTypePatch,
        now: Timestamp,
    ) -> StoreResult<Option<EventTypeRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let Some(current) = select(&tx, project, &name, true)
            .await?
            .filter(|r| r.archive_time.is_none())
        else {
            return Ok(None);
        };
        let updated = patch.applied_to(current, now);
        tx.execute(
            "UPDATE event_types SET description = $3, schema = $4, update_time = $5 WHERE project_id = $1 AND name = $2",
            &[
                &project.to_string(),
                &name.as_str(),
                &updated.description,
                &updated.schema,
                &now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(Some(updated))
    }

    async fn archive_event_type(&self, project: ProjectId, name: EventType, now: Timestamp) -> StoreResult<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE event_types SET archive_time = $3, update_time = $3
                 WHERE project_id = $1 AND name = $2 AND archive_time IS NULL",
                &[&project.to_string(), &name.as_str(), &now.as_millis()],
            )
            .await
            .map_err(store_error)?;
        Ok(changed > 0)
    }

    async fn set_strict_event_types(&self, project: ProjectId, strict: bool) -> StoreResult<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "INSERT INTO event_type_settings (project_id, strict)
                 SELECT id, $2 FROM projects WHERE id = $1
                 ON CONFLICT (project_id) DO UPDATE SET strict = excluded.strict",
                &[&project.to_string(), &strict],
            )
            .await
            .map_err(store_error)?;
        Ok(changed > 0)
    }

    async fn strict_event_types(&self, project: ProjectId) -> StoreResult<bool> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT strict FROM event_type_settings WHERE project_id = $1",
                &[&project.to_string()],
            )
            .await
            .map_err(store_error)?;
        row.map(|row| get::<bool>(&row, 0))
            .transpose()
            .map(|s| s.unwrap_or(false))
    }
}
