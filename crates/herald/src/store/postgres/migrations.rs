//! Versioned migrations, applied in order under a session advisory lock,
//! so several nodes starting at once apply each migration exactly once:
//! the first takes the lock and migrates, the others wait, then find
//! nothing to do. A database newer than this binary is refused.

use tokio_postgres::Client;

use super::connect::store_error;
use crate::store::{StoreError, StoreResult};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_delivery_log.sql"),
    include_str!("migrations/0003_sealed_secrets.sql"),
    include_str!("migrations/0004_endpoint_health.sql"),
    include_str!("migrations/0005_batches.sql"),
    include_str!("migrations/0006_operations.sql"),
    include_str!("migrations/0007_endpoint_controls.sql"),
    include_str!("migrations/0008_event_types.sql"),
    include_str!("migrations/0009_sealed_signing_keys.sql"),
];

/// The advisory lock key: "herald" in ASCII, so other applications
/// sharing the database are unlikely to collide with it.
const LOCK_KEY: i64 = 0x6865_7261_6c64;

/// The newest schema version this binary knows.
pub(super) fn known_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// Applies pending migrations; returns the version now in force.
pub(super) async fn migrate(client: &mut Client) -> StoreResult<i64> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(store_error)?;
    let result = apply(client).await;
    // Unlock even when a migration failed; a dropped connection unlocks too.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    result
}

async fn apply(client: &mut Client) -> StoreResult<i64> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(store_error)?;
    let current = current_version(client).await?;
    let known = known_version();
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than this Herald ({known}); upgrade Herald"
        )));
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i64::try_from(index).unwrap_or(i64::MAX) + 1;
        let tx = client.transaction().await.map_err(store_error)?;
        tx.batch_execute(sql).await.map_err(store_error)?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version])
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(current.max(known))
}

/// The schema version in force (0 for an empty database).
pub(super) async fn current_version(client: &Client) -> StoreResult<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(store_error)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await
        .map_err(store_error)?
        .get(0))
}
