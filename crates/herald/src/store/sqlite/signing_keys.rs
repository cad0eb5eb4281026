//! SQL for Herald's own signing keys, and the SQLite [`SigningKeyStore`].

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::{store_error, timestamp, timestamp_opt};
use super::writer::Lane;
use crate::domain::Timestamp;
use crate::store::sealing::{open, seal};
use crate::store::{KeyAlgorithm, SigningKeyStore, StoreError, StoreResult, StoredSigningKey};

fn list(conn: &Connection, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
    let rows: Vec<(String, String, String, Timestamp, Option<Timestamp>)> = conn
        .prepare_cached(
            "SELECT kid, algorithm, private_key, create_time, retire_time FROM signing_keys
             WHERE retire_time IS NULL OR retire_time > ?1 ORDER BY create_time, kid",
        )
        .and_then(|mut stmt| {
            stmt.query_map([now.as_millis()], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    timestamp(row, 3)?,
                    timestamp_opt(row, 4)?,
                ))
            })?
            .collect()
        })
        .map_err(store_error)?;
    rows.into_iter()
        .map(|(kid, algorithm, sealed, create_time, retire_time)| {
            Ok(StoredSigningKey {
                algorithm: KeyAlgorithm::parse(&algorithm)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown signing key algorithm {algorithm:?}")))?,
                kid,
                private_key: open(&sealed)?,
                create_time,
                retire_time,
            })
        })
        .collect()
}

fn insert(conn: &Connection, key: &StoredSigningKey, only_if_none: bool) -> StoreResult<()> {
    let conflict = if only_if_none { " ON CONFLICT DO NOTHING" } else { "" };
    conn.execute(
        &format!(
            "INSERT INTO signing_keys (kid, algorithm, private_key, create_time, retire_time)
             VALUES (?1, ?2, ?3, ?4, NULL){conflict}"
        ),
        params![
            key.kid,
            key.algorithm.as_str(),
            seal(&key.private_key),
            key.create_time.as_millis()
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

fn rotate(conn: &Connection, keys: &[StoredSigningKey], retire_at: Timestamp) -> StoreResult<()> {
    for key in keys {
        conn.execute(
            "UPDATE signing_keys SET retire_time = ?2 WHERE algorithm = ?1 AND retire_time IS NULL",
            params![key.algorithm.as_str(), retire_at.as_millis()],
        )
        .map_err(store_error)?;
        insert(conn, key, false)?;
    }
    Ok(())
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
        self.readers.read(move |conn| list(conn, now)).await
    }

    async fn init_signing_keys(&self, candidates: Vec<StoredSigningKey>) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| {
                candidates.iter().try_for_each(|key| insert(conn, key, true))
            })
            .await
    }

    async fn rotate_signing_keys(
        &self,
        new_keys: Vec<StoredSigningKey>,
        retire_previous_at: Timestamp,
    ) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| rotate(conn, &new_keys, retire_previous_at))
            .await
    }
}
