//! Versioned schema migrations, applied in order at open, each in its own
//! transaction. A database newer than this binary is refused rather than
//! guessed at.

use rusqlite::Connection;

use crate::store::{StoreError, StoreResult};

/// Every migration, in order; a migration's version is its index plus one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_shared_contract.sql"),
    include_str!("migrations/0003_delivery_log.sql"),
    include_str!("migrations/0004_sealed_secrets.sql"),
    include_str!("migrations/0005_endpoint_health.sql"),
    include_str!("migrations/0006_batches.sql"),
    include_str!("migrations/0007_operations.sql"),
    include_str!("migrations/0008_endpoint_controls.sql"),
    include_str!("migrations/0009_event_types.sql"),
    include_str!("migrations/0010_sealed_signing_keys.sql"),
];

/// Applies pending migrations; returns the schema version now in force.
pub(super) fn migrate(conn: &mut Connection) -> StoreResult<i64> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(super::unavailable)?;
    let current: i64 = conn
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |row| {
            row.get(0)
        })
        .map_err(super::unavailable)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
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
        let tx = conn.transaction().map_err(super::unavailable)?;
        tx.execute_batch(sql).map_err(super::unavailable)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
            [version],
        )
        .map_err(super::unavailable)?;
        tx.commit().map_err(super::unavailable)?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(current.max(known))
}
