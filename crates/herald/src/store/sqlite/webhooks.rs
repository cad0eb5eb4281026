//! SQL for webhooks and their signing secrets.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parsed, store_error, timestamp, timestamp_opt};
use crate::domain::controls::EndpointControls;
use crate::domain::delivery::reason;
use crate::domain::fanout::Subscriber;
use crate::domain::project::Name;
use crate::domain::secret::Keyring;
use crate::domain::webhook::{EndpointUri, SigningSecretInfo, Webhook};
use crate::domain::{ProjectId, SecretId, SigningKind, Timestamp, WebhookId, WebhookState};
use crate::store::codec::{page_of, parse_patterns, patterns_json};
use crate::store::controls::{from_columns, to_columns};
use crate::store::{NewWebhook, Page, PageRequest, Progress, StoreError, StoreResult, WebhookPatch};

const WEBHOOK_COLUMNS: &str =
    "id, project_id, name, uri, subscribed_events, state, state_reason, signing, create_time, update_time,
     rate_limit_per_second, max_concurrency, ordering, retry_schedule";

pub(super) fn insert_webhook(conn: &Connection, keyring: &Keyring, webhook: &NewWebhook) -> StoreResult<Webhook> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM projects WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([webhook.project_id.to_string()], |row| row.get(0))
                .optional()
        })
        .map_err(store_error)?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let existing: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM webhooks WHERE project_id = ?1 AND delete_time IS NULL AND job_id IS NULL",
        )
        .and_then(|mut stmt| stmt.query_row([webhook.project_id.to_string()], |row| row.get(0)))
        .map_err(store_error)?;
    crate::domain::fanout::check_webhook_count(
        usize::try_from(existing).unwrap_or(usize::MAX),
        webhook.max_per_project,
    )
    .map_err(StoreError::LimitExceeded)?;
    let patterns = patterns_json(&webhook.subscribed_events)?;
    let (rate, max, ordering, schedule) = to_columns(&webhook.controls);
    conn.prepare_cached(
        "INSERT INTO webhooks (id, project_id, name, uri, subscribed_events, state, signing, create_time, update_time,
                               rate_limit_per_second, max_concurrency, ordering, retry_schedule)
         VALUES (?1, ?2, ?3, ?4, ?5, 'enabled', ?6, ?7, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            webhook.id.to_string(),
            webhook.project_id.to_string(),
            webhook.name.as_str(),
            webhook.uri.as_str(),
            patterns,
            webhook.signing.as_str(),
            webhook.now.as_millis(),
            rate,
            max,
            ordering,
            schedule,
        ])
    })
    .map_err(store_error)?;
    super::secrets::insert_secret(conn, keyring, webhook.id, &webhook.secret, webhook.now)?;
    load_webhook(conn, webhook.project_id, webhook.id, webhook.now)?.ok_or(StoreError::NotFound)
}

fn webhook_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        id: parsed(row, 0, "webhook id", WebhookId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        name: Name::from_trusted(row.get(2)?),
        uri: parsed(row, 3, "uri", |s| EndpointUri::parse(s).ok())?,
        subscribed_events: parsed(row, 4, "subscribed events", parse_patterns)?,
        state: parsed(row, 5, "webhook state", WebhookState::parse)?,
        state_reason: row.get(6)?,
        signing: parsed(row, 7, "signing kind", SigningKind::parse)?,
        signing_secrets: Vec::new(),
        controls: controls_from_row(row, 10)?,
        create_time: timestamp(row, 8)?,
        update_time: timestamp(row, 9)?,
    })
}

/// The controls stored in the columns `rate_limit_per_second,
/// max_concurrency, ordering, retry_schedule`, starting at `first`.
pub(super) fn controls_from_row(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<EndpointControls> {
    let rate: Option<i64> = row.get(first)?;
    let max: Option<i64> = row.get(first + 1)?;
    let schedule: Option<String> = row.get(first + 3)?;
    parsed(row, first + 2, "endpoint controls", |ordering| {
        from_columns(rate, max, ordering, schedule.as_deref())
    })
}

/// The secrets of a webhook that still sign at `now`, newest first.
fn load_secrets(conn: &Connection, webhook: WebhookId, now: Timestamp) -> StoreResult<Vec<SigningSecretInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, display, public_key, create_time, expire_time FROM webhook_secrets
             WHERE webhook_id = ?1 AND (expire_time IS NULL OR expire_time > ?2) ORDER BY id DESC",
        )
        .map_err(store_error)?;
    stmt.query_map(params![webhook.to_string(), now.as_millis()], |row| {
        Ok(SigningSecretInfo {
            id: parsed(row, 0, "secret id", SecretId::parse)?,
            display: row.get(1)?,
            public_key: row.get(2)?,
            create_time: timestamp(row, 3)?,
            expire_time: timestamp_opt(row, 4)?,
        })
    })
    .and_then(Iterator::collect)
    .map_err(store_error)
}

pub(super) fn load_webhook(
    conn: &Connection,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND project_id = ?2 AND delete_time IS NULL AND job_id IS NULL"
    );
    let webhook = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_row([id.to_string(), project.to_string()], webhook_from_row)
                .optional()
        })
        .map_err(store_error)?;
    let Some(mut webhook) = webhook else { return Ok(None) };
    webhook.signing_secrets = load_secrets(conn, webhook.id, now)?;
    Ok(Some(webhook))
}

pub(super) fn get_webhook(
    conn: &Connection,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    load_webhook(conn, project, id, now)
}

pub(super) fn list_webhooks(
    conn: &Connection,
    project: ProjectId,
    page: &PageRequest,
    now: Timestamp,
) -> StoreResult<Page<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = ?1 AND delete_time IS NULL AND job_id IS NULL AND id > ?2 ORDER BY id LIMIT ?3"
    );
    let mut items: Vec<Webhook> = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![project.to_string(), page.after.as_deref().unwrap_or(""), page.size],
                webhook_from_row,
            )?
            .collect()
        })
        .map_err(store_error)?;
    for webhook in &mut items {
        webhook.signing_secrets = load_secrets(conn, webhook.id, now)?;
    }
    Ok(page_of(items, page.size, |w| w.id.to_string()))
}

pub(super) fn update_webhook(
    conn: &Connection,
    project: ProjectId,
    id: WebhookId,
    patch: &WebhookPatch,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    let Some(current) = load_webhook(conn, project, id, now)? else {
        return Ok(None);
    };
    let updated = patch.applied_to(&current);
    let (name, uri, events, state, reason) = (
        &updated.name,
        &updated.uri,
        &updated.subscribed_events,
        updated.state,
        &updated.state_reason,
    );
    let (rate, max, ordering, schedule) = to_columns(&updated.controls);
    // A limiter whose rate changed or was cleared starts afresh.
    let keep_limiter = updated.controls.rate_limit == current.controls.rate_limit;
    conn.prepare_cached(
        "UPDATE webhooks SET name = ?2, uri = ?3, subscribed_events = ?4, state = ?5, state_reason = ?6, update_time = ?7,
                rate_limit_per_second = ?8, max_concurrency = ?9, ordering = ?10, retry_schedule = ?11,
                rate_next_us = CASE WHEN ?12 THEN rate_next_us END
         WHERE id = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            id.to_string(),
            name.as_str(),
            uri.as_str(),
            patterns_json(events).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?,
            state.as_str(),
            reason,
            now.as_millis(),
            rate,
            max,
            ordering,
            schedule,
            keep_limiter,
        ])
    })
    .map_err(store_error)?;
    // The hint depends on the state, the ordering and the limiter.
    if state != current.state || updated.controls != current.controls {
        super::queue::refresh_due_hint(conn, id)?;
    }
    load_webhook(conn, project, id, now)
}

pub(super) fn delete_webhook(
    conn: &Connection,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhooks SET delete_time = ?3, update_time = ?3, next_due_at = NULL
             WHERE id = ?1 AND project_id = ?2 AND delete_time IS NULL AND job_id IS NULL",
        )
        .and_then(|mut stmt| stmt.execute(params![id.to_string(), project.to_string(), now.as_millis()]))
        .map_err(store_error)?;
    if changed > 0 {
        // A deleted webhook's secrets must not outlive it in the database.
        conn.prepare_cached("DELETE FROM webhook_secrets WHERE webhook_id = ?1")
            .and_then(|mut stmt| stmt.execute([id.to_string()]))
            .map_err(store_error)?;
    }
    // Its unfinished deliveries are failed afterwards, in bounded chunks
    // (`fail_deliveries_of_deleted`): claims already skip a deleted webhook.
    Ok(changed > 0)
}

/// Rows failed per writer job when a deleted webhook's deliveries are cleared.
pub(super) const FAIL_CHUNK: usize = 10_000;

/// Fails up to `FAIL_CHUNK` unfinished deliveries of deleted webhooks (of
/// `webhook` only, if given) with reason `webhook_deleted`; returns how
/// many. A leased one's in-flight completion will find its lease gone.
pub(super) fn fail_deliveries_of_deleted(
    conn: &Connection,
    webhook: Option<WebhookId>,
    now: Timestamp,
) -> StoreResult<Progress> {
    let webhooks: Vec<String> = match webhook {
        Some(webhook) => vec![webhook.to_string()],
        None => conn
            .prepare_cached("SELECT id FROM webhooks WHERE delete_time IS NOT NULL")
            .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
            .map_err(store_error)?,
    };
    let mut failed = 0;
    for webhook in webhooks {
        let left = FAIL_CHUNK - failed;
        if left == 0 {
            break;
        }
        let changed = conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, lease_token = NULL,
                        last_error = ?4, finish_time = ?2
                 WHERE id IN (SELECT id FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL LIMIT ?3)",
            )
            .and_then(|mut stmt| stmt.execute(params![
                    webhook,
                    now.as_millis(),
                    i64::try_from(left).unwrap_or(0),
                    reason::WEBHOOK_DELETED
                ]))
            .map_err(store_error)?;
        failed += changed;
    }
    let count = u64::try_from(failed).unwrap_or(u64::MAX);
    Ok(if failed < FAIL_CHUNK {
        Progress::Done(count)
    } else {
        Progress::More(count)
    })
}

pub(super) fn enabled_subscribers(conn: &Connection, project: ProjectId) -> StoreResult<Vec<Subscriber>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, subscribed_events FROM webhooks
             WHERE project_id = ?1 AND state = 'enabled' AND delete_time IS NULL AND job_id IS NULL",
        )
        .map_err(store_error)?;
    stmt.query_map([project.to_string()], |row| {
        Ok(Subscriber {
            id: parsed(row, 0, "webhook id", WebhookId::parse)?,
            events: parsed(row, 1, "subscribed events", parse_patterns)?,
        })
    })
    .and_then(Iterator::collect)
    .map_err(store_error)
}
