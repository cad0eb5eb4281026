//! Statistics rollup on PostgreSQL (see `store::stats`). Cells are upserted
//! in key order, so two nodes adding to the same cells never deadlock.

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::get;
use crate::domain::{ProjectId, Timestamp, WebhookId};
use crate::store::{Completion, Progress, StatsCell, StoreResult, rollup};

/// Adds the batch's attempts to the rollup (in the completion's transaction).
pub(super) async fn record(client: &impl GenericClient, completions: &[Completion]) -> StoreResult<()> {
    let cells = rollup(completions);
    if cells.is_empty() {
        return Ok(());
    }
    let webhooks: Vec<String> = cells.iter().map(|(k, _)| k.webhook_id.to_string()).collect();
    let minutes: Vec<i64> = cells.iter().map(|(k, _)| k.minute).collect();
    let outcomes: Vec<&str> = cells.iter().map(|(k, _)| k.outcome).collect();
    let buckets: Vec<i32> = cells
        .iter()
        .map(|(k, _)| i32::try_from(k.bucket).unwrap_or(i32::MAX))
        .collect();
    let counts: Vec<i64> = cells
        .iter()
        .map(|(_, c)| i64::try_from(*c).unwrap_or(i64::MAX))
        .collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO webhook_stats (webhook_id, minute, outcome, bucket, count)
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int4[], $5::int8[])
             ON CONFLICT (webhook_id, minute, outcome, bucket) DO UPDATE SET count = webhook_stats.count + excluded.count",
        )
        .await
        .map_err(store_error)?;
    client
        .execute(&stmt, &[&webhooks, &minutes, &outcomes, &buckets, &counts])
        .await
        .map_err(store_error)?;
    Ok(())
}

const PRUNE_CHUNK: i64 = 5_000;

#[async_trait::async_trait]
impl crate::store::StatsStore for super::PostgresStore {
    async fn webhook_stats(
        &self,
        project: ProjectId,
        webhook: WebhookId,
        since_minute: i64,
    ) -> StoreResult<Option<Vec<StatsCell>>> {
        let client = self.client().await?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL",
                &[&webhook.to_string(), &project.to_string()],
            )
            .await
            .map_err(store_error)?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = client
            .query(
                "SELECT minute, outcome, bucket, count FROM webhook_stats WHERE webhook_id = $1 AND minute >= $2",
                &[&webhook.to_string(), &since_minute],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok(StatsCell {
                    minute: get(row, 0)?,
                    outcome: get(row, 1)?,
                    bucket: u32::try_from(get::<i32>(row, 2)?).unwrap_or(0),
                    count: u64::try_from(get::<i64>(row, 3)?).unwrap_or(0),
                })
            })
            .collect::<StoreResult<Vec<_>>>()
            .map(Some)
    }

    async fn prune_stats(&self, before: Timestamp) -> StoreResult<Progress> {
        let deleted = self
            .client()
            .await?
            .execute(
                "DELETE FROM webhook_stats WHERE (webhook_id, minute, outcome, bucket) IN
                    (SELECT webhook_id, minute, outcome, bucket FROM webhook_stats WHERE minute < $1 LIMIT $2)",
                &[&crate::domain::stats::minute_of(before), &PRUNE_CHUNK],
            )
            .await
            .map_err(store_error)?;
        Ok(if deleted < PRUNE_CHUNK as u64 {
            Progress::Done(deleted)
        } else {
            Progress::More(deleted)
        })
    }
}
