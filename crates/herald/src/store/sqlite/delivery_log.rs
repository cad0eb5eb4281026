//! SQL for the delivery log and for leasing a delivery for a manual attempt
//! (redelivery, ping).

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

use super::queue::attempt_from_row;
use super::rows::{count, parsed, store_error, timestamp, timestamp_opt};
use super::secrets::signing_secrets;
use crate::domain::secret::Keyring;
use crate::domain::webhook::EndpointUri;
use crate::domain::{DeliveryId, DeliveryState, EventId, EventType, ProjectId, WebhookId};
use crate::store::codec::page_of;
use crate::store::codec::{self, delivery_state, next_attempt_time};
use crate::store::{
    DeliveryDetail, DeliveryFilter, DeliveryJob, DeliverySummary, EndpointSnapshot, LeaseToken, ManualLease,
    ManualLeaseRequest, Page, PageRequest, PingRequest, StoreResult,
};

const SUMMARY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.type, d.state, d.attempt_count, d.next_attempt_at,
     d.last_error, d.create_time";

fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliverySummary> {
    let stored: String = row.get(4)?;
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
        last_error: row.get(7)?,
        create_time: timestamp(row, 8)?,
    })
}

/// The stored states a filter state stands for.
fn stored_states(state: Option<DeliveryState>) -> (Option<&'static str>, Option<&'static str>) {
    let states = state.map_or(&[][..], codec::stored_states);
    (states.first().copied(), states.get(1).copied())
}

pub(super) fn list_deliveries(
    conn: &Connection,
    project: ProjectId,
    filter: &DeliveryFilter,
    page: &PageRequest,
) -> StoreResult<Page<DeliverySummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.project_id = ?1 AND (?2 IS NULL OR d.id < ?2)
           AND (?3 IS NULL OR d.webhook_id = ?3) AND (?4 IS NULL OR d.event_id = ?4)
           AND (?5 IS NULL OR d.state = ?5 OR d.state = ?6)
           AND (?7 IS NULL OR d.create_time >= ?7) AND (?8 IS NULL OR d.create_time < ?8)
         ORDER BY d.id DESC LIMIT ?9"
    );
    let (state, also) = stored_states(filter.state);
    let items = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![
                    project.to_string(),
                    page.after,
                    filter.webhook_id.map(|id| id.to_string()),
                    filter.event_id.map(|id| id.to_string()),
                    state,
                    also,
                    filter.since.map(|t| t.as_millis()),
                    filter.until.map(|t| t.as_millis()),
                    page.size,
                ],
                summary_from_row,
            )?
            .collect()
        })
        .map_err(store_error)?;
    Ok(page_of(items, page.size, |d: &DeliverySummary| d.id.to_string()))
}

fn load_summary(conn: &Connection, project: ProjectId, id: DeliveryId) -> StoreResult<Option<DeliverySummary>> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = ?1 AND d.project_id = ?2"
    );
    conn.prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row([id.to_string(), project.to_string()], summary_from_row)
                .optional()
        })
        .map_err(store_error)
}

pub(super) fn get_delivery(
    conn: &Connection,
    project: ProjectId,
    id: DeliveryId,
) -> StoreResult<Option<DeliveryDetail>> {
    let Some(summary) = load_summary(conn, project, id)? else {
        return Ok(None);
    };
    let attempts = conn
        .prepare_cached(
            "SELECT attempt_number, start_time, duration_ms, status_code, response_excerpt, error_kind, error_message
             FROM attempts WHERE delivery_id = ?1 ORDER BY attempt_number",
        )
        .and_then(|mut stmt| stmt.query_map([id.to_string()], attempt_from_row)?.collect())
        .map_err(store_error)?;
    Ok(Some(DeliveryDetail { summary, attempts }))
}

/// Where a live webhook sends: `None` if it does not exist or was deleted.
fn live_endpoint(conn: &Connection, project: ProjectId, webhook: WebhookId) -> StoreResult<Option<EndpointUri>> {
    conn.prepare_cached("SELECT uri FROM webhooks WHERE id = ?1 AND project_id = ?2 AND delete_time IS NULL")
        .and_then(|mut stmt| {
            stmt.query_row([webhook.to_string(), project.to_string()], |row| {
                parsed(row, 0, "endpoint uri", |s| EndpointUri::parse(s).ok())
            })
            .optional()
        })
        .map_err(store_error)
}

pub(super) fn lease_for_redelivery(
    conn: &Connection,
    request: &ManualLeaseRequest,
    token: LeaseToken,
    keyring: &Keyring,
) -> StoreResult<ManualLease> {
    let Some(before) = load_summary(conn, request.project, request.delivery_id)? else {
        return Ok(ManualLease::NotFound);
    };
    if before.in_flight {
        return Ok(ManualLease::InFlight);
    }
    let Some(uri) = live_endpoint(conn, request.project, before.webhook_id)? else {
        return Ok(ManualLease::WebhookDeleted);
    };
    let (event_time, payload): (i64, Vec<u8>) = conn
        .prepare_cached("SELECT timestamp, payload FROM events WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([before.event_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(store_error)?;
    conn.prepare_cached("UPDATE deliveries SET state = 'leased', lease_token = ?2, next_attempt_at = ?3 WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.execute(params![
                request.delivery_id.to_string(),
                token.0,
                request.lease_until.as_millis()
            ])
        })
        .map_err(store_error)?;
    let endpoint = Arc::new(EndpointSnapshot {
        webhook_id: before.webhook_id,
        uri,
        secrets: signing_secrets(conn, keyring, before.webhook_id, request.now)?,
        // Manual attempts are never retried automatically.
        retry_schedule: None,
    });
    let job = DeliveryJob {
        delivery_id: before.id,
        lease: token,
        event_id: before.event_id,
        event_time: crate::domain::Timestamp::from_millis(event_time),
        attempt_number: before.attempt_count + 1,
        payload: Bytes::from(payload),
        endpoint,
    };
    Ok(ManualLease::Leased {
        job: Box::new(job),
        before: Box::new(before),
    })
}

pub(super) fn create_ping(
    conn: &Connection,
    request: &PingRequest,
    token: LeaseToken,
    keyring: &Keyring,
) -> StoreResult<Option<DeliveryJob>> {
    let Some(uri) = live_endpoint(conn, request.project, request.webhook_id)? else {
        return Ok(None);
    };
    let event = &request.event;
    conn.prepare_cached("INSERT INTO events (id, project_id, type, timestamp, payload) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut stmt| {
            stmt.execute(params![
                event.id.to_string(),
                request.project.to_string(),
                event.event_type.as_str(),
                event.timestamp.as_millis(),
                event.payload.as_ref(),
            ])
        })
        .map_err(store_error)?;
    conn.prepare_cached(
        "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at, lease_token,
                                 create_time)
         VALUES (?1, ?2, ?3, ?4, ?5, 'leased', ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            request.delivery_id.to_string(),
            event.id.to_string(),
            request.webhook_id.to_string(),
            request.project.to_string(),
            event.timestamp.as_millis(),
            request.lease_until.as_millis(),
            token.0,
            request.now.as_millis(),
        ])
    })
    .map_err(store_error)?;
    let endpoint = Arc::new(EndpointSnapshot {
        webhook_id: request.webhook_id,
        uri,
        secrets: signing_secrets(conn, keyring, request.webhook_id, request.now)?,
        retry_schedule: None,
    });
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
