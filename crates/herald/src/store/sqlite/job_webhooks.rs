//! Hidden per-job webhook rows (any job kind): attached with their job, in
//! its transaction; never listed or matched as project webhooks
//! (`job_id IS NOT NULL`, the job that created the row). Jobs of a project
//! that name the same URI with the same format share one enabled row, so
//! rows grow with distinct endpoints, not with jobs, and the per-endpoint
//! cap applies per endpoint. Their one secret row names the signature
//! format and holds no key material: Herald's own keys sign.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parsed, store_error};
use crate::domain::job_webhook::JobSignatureFormat;
use crate::domain::{EndpointUri, ProjectId, SecretId, SigningKind, Timestamp, WebhookId};
use crate::store::StoreResult;

/// The rows for `uris` (existing or new), in order.
pub(super) fn attach(
    conn: &Connection,
    project: ProjectId,
    job_id: &str,
    format: JobSignatureFormat,
    uris: &[EndpointUri],
    now: Timestamp,
) -> StoreResult<Vec<WebhookId>> {
    let kind = SigningKind::Job(format);
    let mut ids = Vec::with_capacity(uris.len());
    for uri in uris {
        let existing = conn
            .prepare_cached(
                "SELECT id FROM webhooks WHERE project_id = ?1 AND uri = ?2 AND signing = ?3
                 AND job_id IS NOT NULL AND delete_time IS NULL AND state = 'enabled' LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![project.to_string(), uri.as_str(), kind.as_str()], |row| {
                    parsed(row, 0, "webhook id", WebhookId::parse)
                })
                .optional()
            })
            .map_err(store_error)?;
        if let Some(id) = existing {
            ids.push(id);
            continue;
        }
        let endpoint = JobEndpoint {
            id: WebhookId::generate(),
            uri: uri.clone(),
        };
        conn.prepare_cached(
            "INSERT INTO webhooks (id, project_id, name, uri, subscribed_events, state, signing, create_time, update_time, job_id)
             VALUES (?1, ?2, ?3, ?4, '[\"*\"]', 'enabled', ?5, ?6, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                endpoint.id.to_string(),
                project.to_string(),
                "per-job webhook",
                endpoint.uri.as_str(),
                kind.as_str(),
                now.as_millis(),
                job_id,
            ])
        })
        .map_err(store_error)?;
        conn.prepare_cached(
            "INSERT INTO webhook_secrets (id, webhook_id, kind, secret, public_key, display, create_time)
             VALUES (?1, ?2, ?3, '', NULL, 'herald keys (/.well-known/jwks.json)', ?4)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                SecretId::generate().to_string(),
                endpoint.id.to_string(),
                kind.as_str(),
                now.as_millis()
            ])
        })
        .map_err(store_error)?;
        ids.push(endpoint.id);
    }
    Ok(ids)
}

struct JobEndpoint {
    id: WebhookId,
    uri: EndpointUri,
}
