//! Hidden per-job webhook rows (any job kind): created with their job, in
//! its transaction; never listed or matched as project webhooks
//! (`job_id IS NOT NULL`). Their one secret row names the signature
//! format and holds no key material: Herald's own keys sign.

use rusqlite::{Connection, params};

use super::rows::store_error;
use crate::domain::job_webhook::JobSignatureFormat;
use crate::domain::{ProjectId, SecretId, SigningKind, Timestamp};
use crate::store::{JobEndpoint, StoreResult};

pub(super) fn insert(
    conn: &Connection,
    project: ProjectId,
    job_id: &str,
    format: JobSignatureFormat,
    endpoints: &[JobEndpoint],
    now: Timestamp,
) -> StoreResult<()> {
    let kind = SigningKind::Job(format);
    for endpoint in endpoints {
        conn.prepare_cached(
            "INSERT INTO webhooks (id, project_id, name, uri, subscribed_events, state, signing, create_time, update_time, job_id)
             VALUES (?1, ?2, ?3, ?4, '[\"*\"]', 'enabled', ?5, ?6, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                endpoint.id.to_string(),
                project.to_string(),
                format!("job {job_id}"),
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
    }
    Ok(())
}
