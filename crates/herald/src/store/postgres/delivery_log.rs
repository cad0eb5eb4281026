//! SQL for the delivery log and for leasing a delivery for a manual attempt
//! (redelivery, ping). A manual lease names this node, like a claim, so a
//! node that dies mid-attempt has it ended by failover.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::queue::attempt_from_row;
use super::rows::{count, get, parsed, timestamp, timestamp_opt};
use super::secrets::signing_secrets;
use crate::domain::secret::Keyring;
use crate::domain::webhook::EndpointUri;
use crate::domain::{DeliveryId, DeliveryState, EventId, EventType, ProjectId, Timestamp, WebhookId};
use crate::store::codec::page_of;
use crate::store::codec::{self, delivery_state, next_attempt_time};
use crate::store::{
    DeliveryDetail, DeliveryFilter, DeliveryJob, DeliverySummary, EndpointSnapshot, LeaseToken, ManualLease,
    ManualLeaseRequest, Page, PageRequest, PingRequest, StoreResult,
};

const SUMMARY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.type, d.state, d.attempt_count, d.next_attempt_at,
     d.last_error, d.create_time";

fn summary_from_row(row: &tokio_postgres::Row) -> StoreResult<DeliverySummary> {
    let stored: String = get(row, 4)?;
    let (state, in_flight) = delivery_state(&stored);
    Ok(DeliverySummary {
        id: parsed(row, 0, "delivery id", DeliveryId::parse)?,
        webhook_id: parsed(row, 1, "webhook id", WebhookId::parse)?,
        event_id: parsed(row, 2, "event id", EventId::parse)?,
        event_type: parsed(row, 3, "event type", |s| EventType::parse(s).ok())?,
        state,
        in_flight,
        attempt_count: count(row, 5)?,
        next_attempt_time: next_attempt_time(state, in_flight, timestamp_opt(row, 6)?),
        last_error: get(row, 7)?,
        create_time: timestamp(row, 8)?,
    })
}

fn stored_states(state: Option<DeliveryState>) -> Option<Vec<&'static str>> {
    state.map(|state| codec::stored_states(state).to_vec())
}

pub(super) async fn list_deliveries(
    client: &impl GenericClient,
    project: ProjectId,
    filter: &DeliveryFilter,
    page: &PageRequest,
) -> StoreResult<Page<DeliverySummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.project_id = $1 AND ($2::text IS NULL OR d.id < $2)
           AND ($3::text IS NULL OR d.webhook_id = $3) AND ($4::text IS NULL OR d.event_id = $4)
           AND ($5::text[] IS NULL OR d.state = ANY($5))
           AND ($6::int8 IS NULL OR d.create_time >= $6) AND ($7::int8 IS NULL OR d.create_time < $7)
         ORDER BY d.id DESC LIMIT $8"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
    let rows = client
        .query(
            &stmt,
            &[
                &project.to_string(),
                &page.after,
                &filter.webhook_id.map(|id| id.to_string()),
                &filter.event_id.map(|id| id.to_string()),
                &stored_states(filter.state),
                &filter.since.map(Timestamp::as_millis),
                &filter.until.map(Timestamp::as_millis),
                &i64::from(page.size),
            ],
        )
        .await
        .map_err(store_error)?;
    let items = rows.iter().map(summary_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(page_of(items, page.size, |d: &DeliverySummary| d.id.to_string()))
}

async fn load_summary(
    client: &impl GenericClient,
    project: ProjectId,
    id: DeliveryId,
    lock: bool,
) -> StoreResult<Option<DeliverySummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = $1 AND d.project_id = $2{}",
        if lock { " FOR UPDATE OF d" } else { "" }
    );
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
    client
        .query_opt(&stmt, &[&id.to_string(), &project.to_string()])
        .await
        .map_err(store_error)?
        .as_ref()
        .map(summary_from_row)
        .transpose()
}

pub(super) async fn get_delivery(
    client: &impl GenericClient,
    project: ProjectId,
    id: DeliveryId,
) -> StoreResult<Option<DeliveryDetail>> {
    let Some(summary) = load_summary(client, project, id, false).await? else {
        return Ok(None);
    };
    let stmt = client
        .prepare_cached(
            "SELECT attempt_number, start_time, duration_ms, status_code, response_excerpt, error_kind, error_message
             FROM attempts WHERE delivery_id = $1 ORDER BY attempt_number",
        )
        .await
        .map_err(store_error)?;
    let rows = client.query(&stmt, &[&id.to_string()]).await.map_err(store_error)?;
    let attempts = rows.iter().map(attempt_from_row).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(DeliveryDetail { summary, attempts }))
}

/// Where a live webhook sends: `None` if it does not exist or was deleted.
async fn live_endpoint(
    client: &impl GenericClient,
    project: ProjectId,
    webhook: WebhookId,
) -> StoreResult<Option<EndpointUri>> {
    let stmt = client
        .prepare_cached("SELECT uri FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL")
        .await
        .map_err(store_error)?;
    client
        .query_opt(&stmt, &[&webhook.to_string(), &project.to_string()])
        .await
        .map_err(store_error)?
        .map(|row| parsed(&row, 0, "endpoint uri", |s| EndpointUri::parse(s).ok()))
        .transpose()
}

async fn snapshot(
    client: &impl GenericClient,
    keyring: &Keyring,
    webhook: WebhookId,
    uri: EndpointUri,
    now: Timestamp,
) -> StoreResult<Arc<EndpointSnapshot>> {
    let secrets = signing_secrets(client, keyring, vec![webhook.to_string()], now)
        .await?
        .remove(&webhook)
        .unwrap_or_default();
    Ok(Arc::new(EndpointSnapshot {
        webhook_id: webhook,
        uri,
        secrets,
        // Manual attempts are never retried automatically.
        retry_schedule: None,
    }))
}

pub(super) async fn lease_for_redelivery(
    client: &impl GenericClient,
    request: &ManualLeaseRequest,
    token: LeaseToken,
    node: &str,
    keyring: &Keyring,
) -> StoreResult<ManualLease> {
    // Locks the row: a claim (SKIP LOCKED) passes it by meanwhile.
    let Some(before) = load_summary(client, request.project, request.delivery_id, true).await? else {
        return Ok(ManualLease::NotFound);
    };
    if before.in_flight {
        return Ok(ManualLease::InFlight);
    }
    let Some(uri) = live_endpoint(client, request.project, before.webhook_id).await? else {
        return Ok(ManualLease::WebhookDeleted);
    };
    let stmt = client
        .prepare_cached("SELECT timestamp, payload FROM events WHERE id = $1")
        .await
        .map_err(store_error)?;
    let row = client
        .query_one(&stmt, &[&before.event_id.to_string()])
        .await
        .map_err(store_error)?;
    let event_time = timestamp(&row, 0)?;
    let payload = Bytes::from(get::<Vec<u8>>(&row, 1)?);
    let stmt = client
        .prepare_cached(
            "UPDATE deliveries SET state = 'leased', lease_token = $2, next_attempt_at = $3, lease_node = $4 WHERE id = $1",
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &request.delivery_id.to_string(),
                &token.0,
                &request.lease_until.as_millis(),
                &node,
            ],
        )
        .await
        .map_err(store_error)?;
    let endpoint = snapshot(client, keyring, before.webhook_id, uri, request.now).await?;
    let job = DeliveryJob {
        delivery_id: before.id,
        lease: token,
        event_id: before.event_id,
        event_time,
        attempt_number: before.attempt_count + 1,
        payload,
        endpoint,
    };
    Ok(ManualLease::Leased {
        job: Box::new(job),
        before: Box::new(before),
    })
}

pub(super) async fn create_ping(
    client: &impl GenericClient,
    request: &PingRequest,
    token: LeaseToken,
    node: &str,
    keyring: &Keyring,
) -> StoreResult<Option<DeliveryJob>> {
    let Some(uri) = live_endpoint(client, request.project, request.webhook_id).await? else {
        return Ok(None);
    };
    let event = &request.event;
    client
        .execute(
            "INSERT INTO events (id, project_id, type, timestamp, payload) VALUES ($1, $2, $3, $4, $5)",
            &[
                &event.id.to_string(),
                &request.project.to_string(),
                &event.event_type.as_str(),
                &event.timestamp.as_millis(),
                &event.payload.as_ref(),
            ],
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at,
                                     lease_token, lease_node, create_time)
             VALUES ($1, $2, $3, $4, $5, 'leased', $6, $7, $8, $9)",
            &[
                &request.delivery_id.to_string(),
                &event.id.to_string(),
                &request.webhook_id.to_string(),
                &request.project.to_string(),
                &event.timestamp.as_millis(),
                &request.lease_until.as_millis(),
                &token.0,
                &node,
                &request.now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    let endpoint = snapshot(client, keyring, request.webhook_id, uri, request.now).await?;
    Ok(Some(DeliveryJob {
        delivery_id: request.delivery_id,
        lease: token,
        event_id: event.id,
        event_time: event.timestamp,
        attempt_number: 1,
        payload: event.payload.clone(),
        endpoint,
    }))
}
