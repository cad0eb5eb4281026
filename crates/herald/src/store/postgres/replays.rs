//! Replays on PostgreSQL (see `store::replays`). Several nodes may run
//! replay steps: a step locks the replay row `FOR UPDATE SKIP LOCKED` and
//! does its chunk, cursor move included, in that one transaction, so two
//! nodes never advance one replay at once (the second takes another
//! replay, or none) and a chunk is never queued twice. Creating a replay
//! locks its webhook row, so two overlapping requests cannot both pass the
//! overlap check.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::hints;
use super::rows::{get, parsed, timestamp, timestamp_opt};
use crate::domain::{DeliveryId, ProjectId, ReplayId, Timestamp, WebhookId};
use crate::store::codec::page_of;
use crate::store::{
    CreatedReplay, NewReplay, POSTGRES_CHUNK, Page, PageRequest, Progress, Replay, ReplayFilter, ReplayState,
    StoreError, StoreResult, finished, start_cursor, wanted,
};

const COLUMNS: &str = "id, project_id, webhook_id, since, until, filter, state, examined, requeued, error, \
                       create_time, update_time, finish_time";

fn replay_from_row(row: &tokio_postgres::Row) -> StoreResult<Replay> {
    Ok(Replay {
        id: parsed(row, 0, "replay id", ReplayId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        webhook_id: parsed(row, 2, "webhook id", WebhookId::parse)?,
        since: timestamp(row, 3)?,
        until: timestamp(row, 4)?,
        filter: parsed(row, 5, "replay filter", ReplayFilter::parse)?,
        state: parsed(row, 6, "replay state", ReplayState::parse)?,
        examined: u64::try_from(get::<i64>(row, 7)?).unwrap_or(0),
        requeued: u64::try_from(get::<i64>(row, 8)?).unwrap_or(0),
        error: get(row, 9)?,
        create_time: timestamp(row, 10)?,
        update_time: timestamp(row, 11)?,
        finish_time: timestamp_opt(row, 12)?,
    })
}

async fn create(client: &impl GenericClient, new: &NewReplay) -> StoreResult<CreatedReplay> {
    let locked = client
        .query_opt(
            "SELECT 1 FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL FOR NO KEY UPDATE",
            &[&new.webhook_id.to_string(), &new.project_id.to_string()],
        )
        .await
        .map_err(store_error)?;
    if locked.is_none() {
        return Ok(CreatedReplay::WebhookNotFound);
    }
    let until = new.until.min(new.now);
    let overlapping = client
        .query_opt(
            "SELECT id FROM replays WHERE webhook_id = $1 AND state = 'running' AND since < $3 AND until > $2 LIMIT 1",
            &[&new.webhook_id.to_string(), &new.since.as_millis(), &until.as_millis()],
        )
        .await
        .map_err(store_error)?;
    if let Some(row) = overlapping {
        return Ok(CreatedReplay::Overlaps(parsed(&row, 0, "replay id", ReplayId::parse)?));
    }
    let scan_end: Option<String> = get(
        &client
            .query_one(
                "SELECT MAX(id) FROM deliveries WHERE webhook_id = $1",
                &[&new.webhook_id.to_string()],
            )
            .await
            .map_err(store_error)?,
        0,
    )?;
    client
        .execute(
            "INSERT INTO replays (id, project_id, webhook_id, since, until, filter, state, cursor_id, scan_end,
                                  create_time, update_time)
             VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $9)",
            &[
                &new.id.to_string(),
                &new.project_id.to_string(),
                &new.webhook_id.to_string(),
                &new.since.as_millis(),
                &until.as_millis(),
                &new.filter.as_str(),
                &start_cursor(new.since),
                &scan_end.unwrap_or_default(),
                &new.now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    get_replay(client, new.project_id, new.id)
        .await?
        .map(CreatedReplay::Created)
        .ok_or_else(|| StoreError::Corrupt("a replay just created is missing".into()))
}

async fn get_replay(client: &impl GenericClient, project: ProjectId, id: ReplayId) -> StoreResult<Option<Replay>> {
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM replays WHERE id = $1 AND project_id = $2"),
            &[&id.to_string(), &project.to_string()],
        )
        .await
        .map_err(store_error)?
        .as_ref()
        .map(replay_from_row)
        .transpose()
}

async fn list(client: &impl GenericClient, project: ProjectId, page: &PageRequest) -> StoreResult<Page<Replay>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM replays WHERE project_id = $1 AND ($2::text IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&project.to_string(), &page.after, &i64::from(page.size)],
        )
        .await
        .map_err(store_error)?;
    let items = rows.iter().map(replay_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |r| r.id.to_string()))
}

/// One chunk of one running replay no other node is advancing; returns
/// the hints to lower after the commit.
async fn step(client: &impl GenericClient, now: Timestamp) -> StoreResult<(Progress, HashMap<WebhookId, i64>)> {
    let head = client
        .query_opt(
            "SELECT id, webhook_id, since, until, filter, cursor_id, scan_end FROM replays
             WHERE state = 'running' ORDER BY update_time, id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await
        .map_err(store_error)?;
    let Some(head) = head else {
        return Ok((Progress::Done(0), HashMap::new()));
    };
    let id: String = get(&head, 0)?;
    let webhook: WebhookId = parsed(&head, 1, "webhook id", WebhookId::parse)?;
    let since = timestamp(&head, 2)?;
    let until = timestamp(&head, 3)?;
    let filter = parsed(&head, 4, "replay filter", ReplayFilter::parse)?;
    let cursor: String = get(&head, 5)?;
    let scan_end: String = get(&head, 6)?;
    let alive = client
        .query_opt(
            "SELECT 1 FROM webhooks WHERE id = $1 AND delete_time IS NULL",
            &[&webhook.to_string()],
        )
        .await
        .map_err(store_error)?
        .is_some();
    if !alive {
        client
            .execute(
                "UPDATE replays SET state = 'failed', error = 'the webhook was deleted', update_time = $2,
                        finish_time = $2 WHERE id = $1",
                &[&id, &now.as_millis()],
            )
            .await
            .map_err(store_error)?;
        return Ok((Progress::More(0), HashMap::new()));
    }
    let chunk = client
        .query(
            "SELECT id, state, create_time FROM deliveries
             WHERE webhook_id = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4",
            &[&webhook.to_string(), &cursor, &scan_end, &(POSTGRES_CHUNK as i64)],
        )
        .await
        .map_err(store_error)?;
    let mut sources = Vec::new();
    let mut copies = Vec::new();
    for row in &chunk {
        if wanted(since, until, filter, timestamp(row, 2)?, &get::<String>(row, 1)?) {
            sources.push(get::<String>(row, 0)?);
            copies.push(DeliveryId::generate().to_string());
        }
    }
    if !sources.is_empty() {
        client
            .execute(
                "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at,
                                         create_time, replay_id)
                 SELECT c.new_id, d.event_id, d.webhook_id, d.project_id, $3, 'pending', $3, $3, $4
                 FROM UNNEST($1::text[], $2::text[]) AS c(old_id, new_id) JOIN deliveries d ON d.id = c.old_id",
                &[&sources, &copies, &now.as_millis(), &id],
            )
            .await
            .map_err(store_error)?;
        client
            .execute("SELECT pg_notify('herald_work', '')", &[])
            .await
            .map_err(store_error)?;
    }
    let done = finished(chunk.len(), POSTGRES_CHUNK);
    let next = match chunk.last() {
        Some(row) => get::<String>(row, 0)?,
        None => cursor,
    };
    client
        .execute(
            "UPDATE replays SET cursor_id = $2, examined = examined + $3, requeued = requeued + $4,
                    update_time = $5::int8, state = CASE WHEN $6::bool THEN 'succeeded' ELSE state END,
                    finish_time = CASE WHEN $6::bool THEN $5::int8 END
             WHERE id = $1",
            &[
                &id,
                &next,
                &(chunk.len() as i64),
                &(sources.len() as i64),
                &now.as_millis(),
                &done,
            ],
        )
        .await
        .map_err(store_error)?;
    let mut due = HashMap::new();
    if !sources.is_empty() {
        due.insert(webhook, now.as_millis());
    }
    Ok((Progress::More(sources.len() as u64), due))
}

#[async_trait::async_trait]
impl crate::store::ReplayStore for super::PostgresStore {
    async fn create_replay(&self, replay: NewReplay) -> StoreResult<CreatedReplay> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let created = create(&tx, &replay).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(created)
    }

    async fn get_replay(&self, project: ProjectId, id: ReplayId) -> StoreResult<Option<Replay>> {
        get_replay(&self.client().await?, project, id).await
    }

    async fn list_replays(&self, project: ProjectId, page: PageRequest) -> StoreResult<Page<Replay>> {
        list(&self.client().await?, project, &page).await
    }

    async fn step_replays(&self, now: Timestamp) -> StoreResult<Progress> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let (progress, due) = step(&tx, now).await?;
        tx.commit().await.map_err(store_error)?;
        if !due.is_empty() {
            hints::lower_after_commit(&self.hint_pool, &due).await;
            self.work.notify_one();
        }
        Ok(progress)
    }
}
