//! SQL for webhooks and their signing secrets.

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::{get, parsed, timestamp, timestamp_opt};
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

/// Rows failed per transaction when a deleted webhook's deliveries are cleared.
const FAIL_CHUNK: i64 = 10_000;

pub(super) async fn insert_webhook(
    client: &impl GenericClient,
    keyring: &Keyring,
    webhook: &NewWebhook,
) -> StoreResult<Webhook> {
    // The project's row lock serializes webhook creation per project
    // across nodes, so the count below is exact.
    let exists = client
        .query_opt(
            "SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE",
            &[&webhook.project_id.to_string()],
        )
        .await
        .map_err(store_error)?;
    if exists.is_none() {
        return Err(StoreError::NotFound);
    }
    let existing: i64 = get(
        &client
            .query_one(
                "SELECT COUNT(*) FROM webhooks WHERE project_id = $1 AND delete_time IS NULL AND job_id IS NULL",
                &[&webhook.project_id.to_string()],
            )
            .await
            .map_err(store_error)?,
        0,
    )?;
    crate::domain::fanout::check_webhook_count(
        usize::try_from(existing).unwrap_or(usize::MAX),
        webhook.max_per_project,
    )
    .map_err(StoreError::LimitExceeded)?;
    let patterns = patterns_json(&webhook.subscribed_events)?;
    let (rate, max, ordering, schedule) = to_columns(&webhook.controls);
    let (rate, max) = (int4(rate), int4(max));
    let stmt = client
        .prepare_cached(
            "INSERT INTO webhooks (id, project_id, name, uri, subscribed_events, state, signing, create_time, update_time,
                                   rate_limit_per_second, max_concurrency, ordering, retry_schedule)
             VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $7, $7, $8, $9, $10, $11)",
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &webhook.id.to_string(),
                &webhook.project_id.to_string(),
                &webhook.name.as_str(),
                &webhook.uri.as_str(),
                &patterns,
                &webhook.signing.as_str(),
                &webhook.now.as_millis(),
                &rate,
                &max,
                &ordering,
                &schedule,
            ],
        )
        .await
        .map_err(store_error)?;
    super::secrets::insert_secret(client, keyring, webhook.id, &webhook.secret, webhook.now).await?;
    load_webhook(client, webhook.project_id, webhook.id, webhook.now)
        .await?
        .ok_or(StoreError::NotFound)
}

fn webhook_from_row(row: &tokio_postgres::Row) -> StoreResult<Webhook> {
    Ok(Webhook {
        id: parsed(row, 0, "webhook id", WebhookId::parse)?,
        project_id: parsed(row, 1, "project id", ProjectId::parse)?,
        name: Name::from_trusted(get(row, 2)?),
        uri: parsed(row, 3, "uri", |s| EndpointUri::parse(s).ok())?,
        subscribed_events: parsed(row, 4, "subscribed events", parse_patterns)?,
        state: parsed(row, 5, "webhook state", WebhookState::parse)?,
        state_reason: get(row, 6)?,
        signing: parsed(row, 7, "signing kind", SigningKind::parse)?,
        signing_secrets: Vec::new(),
        controls: controls_from_row(row, 10)?,
        create_time: timestamp(row, 8)?,
        update_time: timestamp(row, 9)?,
    })
}

/// The controls stored in the columns `rate_limit_per_second,
/// max_concurrency, ordering, retry_schedule`, starting at `first`.
pub(super) fn controls_from_row(row: &tokio_postgres::Row, first: usize) -> StoreResult<EndpointControls> {
    let rate: Option<i32> = get(row, first)?;
    let max: Option<i32> = get(row, first + 1)?;
    let schedule: Option<String> = get(row, first + 3)?;
    parsed(row, first + 2, "endpoint controls", |ordering| {
        from_columns(rate.map(i64::from), max.map(i64::from), ordering, schedule.as_deref())
    })
}

/// The secrets of a webhook that still sign at `now`, newest first.
async fn load_secrets(
    client: &impl GenericClient,
    webhook: WebhookId,
    now: Timestamp,
) -> StoreResult<Vec<SigningSecretInfo>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, display, public_key, create_time, expire_time FROM webhook_secrets
             WHERE webhook_id = $1 AND (expire_time IS NULL OR expire_time > $2) ORDER BY id DESC",
        )
        .await
        .map_err(store_error)?;
    let rows = client
        .query(&stmt, &[&webhook.to_string(), &now.as_millis()])
        .await
        .map_err(store_error)?;
    rows.iter()
        .map(|row| {
            Ok(SigningSecretInfo {
                id: parsed(row, 0, "secret id", SecretId::parse)?,
                display: get(row, 1)?,
                public_key: get(row, 2)?,
                create_time: timestamp(row, 3)?,
                expire_time: timestamp_opt(row, 4)?,
            })
        })
        .collect()
}

async fn load_webhook(
    client: &impl GenericClient,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL AND job_id IS NULL"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
    let row = client
        .query_opt(&stmt, &[&id.to_string(), &project.to_string()])
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let mut webhook = webhook_from_row(&row)?;
    webhook.signing_secrets = load_secrets(client, webhook.id, now).await?;
    Ok(Some(webhook))
}

pub(super) async fn get_webhook(
    client: &impl GenericClient,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    load_webhook(client, project, id, now).await
}

pub(super) async fn list_webhooks(
    client: &impl GenericClient,
    project: ProjectId,
    page: &PageRequest,
    now: Timestamp,
) -> StoreResult<Page<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE project_id = $1 AND delete_time IS NULL AND job_id IS NULL AND id > $2 ORDER BY id LIMIT $3"
    );
    let stmt = client.prepare_cached(&sql).await.map_err(store_error)?;
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
    let mut items = rows.iter().map(webhook_from_row).collect::<StoreResult<Vec<_>>>()?;
    for webhook in &mut items {
        webhook.signing_secrets = load_secrets(client, webhook.id, now).await?;
    }
    Ok(page_of(items, page.size, |w| w.id.to_string()))
}

/// Runs in a transaction: reads the row FOR UPDATE so concurrent patches
/// on other nodes apply one after the other.
pub(super) async fn update_webhook(
    client: &impl GenericClient,
    project: ProjectId,
    id: WebhookId,
    patch: &WebhookPatch,
    now: Timestamp,
) -> StoreResult<Option<Webhook>> {
    let locked = client
        .query_opt(
            "SELECT 1 FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL AND job_id IS NULL FOR NO KEY UPDATE",
            &[&id.to_string(), &project.to_string()],
        )
        .await
        .map_err(store_error)?;
    if locked.is_none() {
        return Ok(None);
    }
    let Some(current) = load_webhook(client, project, id, now).await? else {
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
    let (rate, max) = (int4(rate), int4(max));
    // A limiter whose rate changed or was cleared starts afresh.
    let keep_limiter = updated.controls.rate_limit == current.controls.rate_limit;
    client
        .execute(
            "UPDATE webhooks SET name = $2, uri = $3, subscribed_events = $4, state = $5, state_reason = $6,
                    update_time = $7, rate_limit_per_second = $8, max_concurrency = $9, ordering = $10,
                    retry_schedule = $11, rate_next_us = CASE WHEN $12 THEN rate_next_us END
             WHERE id = $1",
            &[
                &id.to_string(),
                &name.as_str(),
                &uri.as_str(),
                &patterns_json(events)?,
                &state.as_str(),
                &reason,
                &now.as_millis(),
                &rate,
                &max,
                &ordering,
                &schedule,
                &keep_limiter,
            ],
        )
        .await
        .map_err(store_error)?;
    // The hint depends on the state, the ordering and the limiter.
    if state != current.state || updated.controls != current.controls {
        refresh_due_hint(client, id).await?;
    }
    load_webhook(client, project, id, now).await
}

/// Recomputes the webhook's hint exactly; `NULL` unless it is enabled and
/// has unfinished deliveries.
pub(super) async fn refresh_due_hint(client: &impl GenericClient, webhook: WebhookId) -> StoreResult<()> {
    client
        .execute(
            &format!(
                "UPDATE webhooks w SET next_due_at = CASE WHEN w.state = 'enabled' AND w.delete_time IS NULL THEN
                    {} END
                 WHERE w.id = $1",
                super::hints::EXACT_HINT
            ),
            &[&webhook.to_string()],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Marks the webhook deleted and deletes its secrets (they must not
/// outlive it); its deliveries are failed afterwards, in chunks.
pub(super) async fn delete_webhook(
    client: &impl GenericClient,
    project: ProjectId,
    id: WebhookId,
    now: Timestamp,
) -> StoreResult<bool> {
    let changed = client
        .execute(
            "UPDATE webhooks SET delete_time = $3, update_time = $3, next_due_at = NULL
             WHERE id = $1 AND project_id = $2 AND delete_time IS NULL AND job_id IS NULL",
            &[&id.to_string(), &project.to_string(), &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    if changed > 0 {
        client
            .execute("DELETE FROM webhook_secrets WHERE webhook_id = $1", &[&id.to_string()])
            .await
            .map_err(store_error)?;
    }
    Ok(changed > 0)
}

/// Fails up to `FAIL_CHUNK` unfinished deliveries of deleted webhooks (of
/// `webhook` only, if given) with reason `webhook_deleted`. A leased one's
/// in-flight completion will find its lease gone.
pub(super) async fn fail_deliveries_of_deleted(
    client: &impl GenericClient,
    webhook: Option<WebhookId>,
    now: Timestamp,
) -> StoreResult<Progress> {
    let changed = client
        .execute(
            "UPDATE deliveries SET state = 'failed', next_attempt_at = NULL, lease_token = NULL, lease_node = NULL,
                    last_error = $4, finish_time = $2
             WHERE id IN (
                SELECT d.id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                WHERE w.delete_time IS NOT NULL AND ($1::text IS NULL OR w.id = $1) AND d.next_attempt_at IS NOT NULL
                LIMIT $3 FOR UPDATE OF d SKIP LOCKED)",
            &[
                &webhook.map(|w| w.to_string()),
                &now.as_millis(),
                &FAIL_CHUNK,
                &reason::WEBHOOK_DELETED,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(if changed < FAIL_CHUNK.unsigned_abs() {
        Progress::Done(changed)
    } else {
        Progress::More(changed)
    })
}

/// The enabled, undeleted webhooks of `projects`, as publishing matches them.
pub(super) async fn enabled_subscribers(
    client: &impl GenericClient,
    projects: &[String],
) -> StoreResult<Vec<(ProjectId, Subscriber)>> {
    let stmt = client
        .prepare_cached(
            "SELECT project_id, id, subscribed_events FROM webhooks
             WHERE project_id = ANY($1) AND state = 'enabled' AND delete_time IS NULL AND job_id IS NULL",
        )
        .await
        .map_err(store_error)?;
    let rows = client.query(&stmt, &[&projects]).await.map_err(store_error)?;
    rows.iter()
        .map(|row| {
            Ok((
                parsed(row, 0, "project id", ProjectId::parse)?,
                Subscriber {
                    id: parsed(row, 1, "webhook id", WebhookId::parse)?,
                    events: parsed(row, 2, "subscribed events", parse_patterns)?,
                },
            ))
        })
        .collect()
}

/// A validated control value as an `INTEGER` column (bounded far below `i32::MAX`).
fn int4(value: Option<i64>) -> Option<i32> {
    value.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}
