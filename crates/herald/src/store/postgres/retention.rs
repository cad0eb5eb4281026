//! Retention on PostgreSQL (see `store::retention`): each step is one
//! transaction examining at most `PRUNE_EVENTS_PER_STEP` events. A
//! delivery that becomes unfinished meanwhile (a replay copying it) is
//! locked out: the candidate deliveries are locked `FOR UPDATE` and
//! rechecked before anything is deleted.

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::{get, parsed, timestamp};
use crate::domain::EventId;
use crate::store::{PRUNE_EVENTS_PER_STEP, PruneRequest, PruneStep, StoreResult};

async fn prune(client: &impl GenericClient, request: &PruneRequest) -> StoreResult<PruneStep> {
    let (after_time, after_id) = request
        .after
        .map_or((i64::MIN, String::new()), |(t, id)| (t.as_millis(), id.to_string()));
    let before = request.before.as_millis();
    let rows = client
        .query(
            "SELECT e.timestamp, e.id FROM events e
             WHERE (e.timestamp, e.id) > ($1, $2) AND e.timestamp < $3
             ORDER BY e.timestamp, e.id LIMIT $4",
            &[&after_time, &after_id, &before, &(PRUNE_EVENTS_PER_STEP as i64)],
        )
        .await
        .map_err(store_error)?;
    let mut examined = Vec::with_capacity(rows.len());
    for row in &rows {
        examined.push((timestamp(row, 0)?, parsed(row, 1, "event id", EventId::parse)?));
    }
    let ids: Vec<String> = examined.iter().map(|(_, id)| id.to_string()).collect();
    let mut deleted = 0;
    if !ids.is_empty() {
        // Lock every delivery of the examined events, then keep only the
        // events none of whose deliveries is unfinished or recent.
        let kept = client
            .query(
                "SELECT DISTINCT event_id FROM (
                     SELECT event_id, next_attempt_at, finish_time FROM deliveries
                     WHERE event_id = ANY($1) FOR UPDATE) d
                 WHERE d.next_attempt_at IS NOT NULL OR d.finish_time IS NULL OR d.finish_time >= $2",
                &[&ids, &before],
            )
            .await
            .map_err(store_error)?;
        let kept: std::collections::HashSet<String> = kept
            .iter()
            .map(|row| get::<String>(row, 0))
            .collect::<StoreResult<_>>()?;
        let prunable: Vec<String> = ids.into_iter().filter(|id| !kept.contains(id)).collect();
        if !prunable.is_empty() {
            client
                .execute(
                    "DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE event_id = ANY($1))",
                    &[&prunable],
                )
                .await
                .map_err(store_error)?;
            client
                .execute("DELETE FROM deliveries WHERE event_id = ANY($1)", &[&prunable])
                .await
                .map_err(store_error)?;
            deleted = client
                .execute("DELETE FROM events WHERE id = ANY($1)", &[&prunable])
                .await
                .map_err(store_error)?;
        }
    }
    let next = if examined.len() < PRUNE_EVENTS_PER_STEP {
        None
    } else {
        examined.last().copied()
    };
    Ok(PruneStep { deleted, next })
}

#[async_trait::async_trait]
impl crate::store::RetentionStore for super::PostgresStore {
    async fn prune_events(&self, request: PruneRequest) -> StoreResult<PruneStep> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        let step = prune(&tx, &request).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(step)
    }
}
