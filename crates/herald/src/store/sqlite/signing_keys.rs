//! SQL for Herald's own signing keys, and the SQLite [`SigningKeyStore`].
//! Private keys are sealed under the key in force on insert and opened on
//! read (`store::sealing`); this file only moves sealed bytes.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::SqliteStore;
use super::rows::{parsed, parsed_opt, store_error, timestamp, timestamp_opt};
use super::secrets::key_in_force;
use super::writer::Lane;
use crate::domain::Timestamp;
use crate::domain::secret::{Keyring, MasterKeyId, SealedSecret};
use crate::store::sealing::{open, open_plain, open_row, seal};
use crate::store::{KeyAlgorithm, Progress, RESEAL_CHUNK, SigningKeyStore, StoreError, StoreResult, StoredSigningKey};

/// A `signing_keys` row as listed: kid, algorithm, sealing key, sealed
/// bytes, create and retire times.
type KeyRow = (
    String,
    String,
    Option<MasterKeyId>,
    Option<Vec<u8>>,
    Timestamp,
    Option<Timestamp>,
);

fn list(conn: &Connection, keyring: &Keyring, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
    let rows: Vec<KeyRow> = conn
        .prepare_cached(
            "SELECT kid, algorithm, key_id, sealed, create_time, retire_time FROM signing_keys
             WHERE retire_time IS NULL OR retire_time > ?1 ORDER BY create_time, kid",
        )
        .and_then(|mut stmt| {
            stmt.query_map([now.as_millis()], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    parsed_opt(row, 2, "master key id", MasterKeyId::parse)?,
                    row.get(3)?,
                    timestamp(row, 4)?,
                    timestamp_opt(row, 5)?,
                ))
            })?
            .collect()
        })
        .map_err(store_error)?;
    rows.into_iter()
        .map(|(kid, algorithm, key_id, blob, create_time, retire_time)| {
            Ok(StoredSigningKey {
                algorithm: KeyAlgorithm::parse(&algorithm)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown signing key algorithm {algorithm:?}")))?,
                private_key: open_row(keyring, &kid, key_id, blob)?,
                kid,
                create_time,
                retire_time,
            })
        })
        .collect()
}

fn insert(conn: &Connection, keyring: &Keyring, key: &StoredSigningKey, only_if_none: bool) -> StoreResult<()> {
    let in_force =
        key_in_force(conn)?.ok_or_else(|| StoreError::Corrupt("no master key is recorded as in force".into()))?;
    let sealed = seal(keyring, &in_force, &key.kid, &key.private_key)?;
    let conflict = if only_if_none { " ON CONFLICT DO NOTHING" } else { "" };
    conn.execute(
        &format!(
            "INSERT INTO signing_keys (kid, algorithm, private_key, create_time, retire_time, key_id, sealed)
             VALUES (?1, ?2, '', ?3, NULL, ?4, ?5){conflict}"
        ),
        params![
            key.kid,
            key.algorithm.as_str(),
            key.create_time.as_millis(),
            sealed.key_id.as_str(),
            sealed.blob,
        ],
    )
    .map_err(store_error)?;
    Ok(())
}

fn rotate(conn: &Connection, keyring: &Keyring, keys: &[StoredSigningKey], retire_at: Timestamp) -> StoreResult<()> {
    for key in keys {
        conn.execute(
            "UPDATE signing_keys SET retire_time = ?2 WHERE algorithm = ?1 AND retire_time IS NULL",
            params![key.algorithm.as_str(), retire_at.as_millis()],
        )
        .map_err(store_error)?;
        insert(conn, keyring, key, false)?;
    }
    Ok(())
}

/// The master keys the signing keys are sealed under (checked at start
/// with the webhook secrets').
pub(super) fn keys_in_use(conn: &Connection) -> StoreResult<Vec<MasterKeyId>> {
    conn.prepare_cached("SELECT DISTINCT key_id FROM signing_keys WHERE key_id IS NOT NULL")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| parsed(row, 0, "master key id", MasterKeyId::parse))?
                .collect()
        })
        .map_err(store_error)
}

/// Replaces a row's private key with `sealed`; with `expected`, only if
/// the row is still sealed under that key.
fn write_sealed(
    conn: &Connection,
    kid: &str,
    sealed: &SealedSecret,
    expected: Option<&MasterKeyId>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE signing_keys SET private_key = '', key_id = ?2, sealed = ?3
             WHERE kid = ?1 AND (?4 IS NULL OR key_id = ?4)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                kid,
                sealed.key_id.as_str(),
                sealed.blob,
                expected.map(MasterKeyId::as_str)
            ])
        })
        .map_err(store_error)?;
    Ok(changed > 0)
}

/// At open, in the caller's transaction (after the master keys were
/// checked): seals the `plain:` rows a Herald before sealing wrote, under
/// the key in force. Returns how many.
pub(super) fn seal_plain(conn: &Connection, keyring: &Keyring, in_force: &MasterKeyId) -> StoreResult<u64> {
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT kid, private_key FROM signing_keys WHERE key_id IS NULL")
        .and_then(|mut stmt| stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
        .map_err(store_error)?;
    let count = rows.len();
    for (kid, stored) in rows {
        let stored = zeroize::Zeroizing::new(stored);
        let private_key = open_plain(&kid, &stored)?;
        let sealed = seal(keyring, in_force, &kid, &private_key)?;
        write_sealed(conn, &kid, &sealed, None)?;
    }
    Ok(u64::try_from(count).unwrap_or(u64::MAX))
}

/// One piece of a master-key rotation, after the webhook secrets' pieces
/// recorded the keyring's primary as the key in force: seals up to
/// `RESEAL_CHUNK` signing keys sealed under other keys anew under it.
pub(super) fn reseal_piece(conn: &Connection, keyring: &Keyring) -> StoreResult<Progress> {
    let target = keyring.primary().id().clone();
    let rows: Vec<(String, MasterKeyId, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT kid, key_id, sealed FROM signing_keys WHERE key_id IS NOT NULL AND key_id <> ?1 LIMIT ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![target.as_str(), i64::try_from(RESEAL_CHUNK).unwrap_or(0)],
                |row| {
                    Ok((
                        row.get(0)?,
                        parsed(row, 1, "master key id", MasterKeyId::parse)?,
                        row.get(2)?,
                    ))
                },
            )?
            .collect()
        })
        .map_err(store_error)?;
    let mut count = 0u64;
    for (kid, key_id, blob) in &rows {
        let private_key = open(
            keyring,
            kid,
            &SealedSecret {
                key_id: key_id.clone(),
                blob: blob.clone(),
            },
        )?;
        let sealed = seal(keyring, &target, kid, &private_key)?;
        if write_sealed(conn, kid, &sealed, Some(key_id))? {
            count += 1;
        }
    }
    Ok(if rows.len() < RESEAL_CHUNK {
        Progress::Done(count)
    } else {
        Progress::More(count)
    })
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
        let keyring = std::sync::Arc::clone(&self.keyring);
        self.readers.read(move |conn| list(conn, &keyring, now)).await
    }

    async fn init_signing_keys(&self, candidates: Vec<StoredSigningKey>) -> StoreResult<()> {
        let keyring = std::sync::Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                candidates.iter().try_for_each(|key| insert(conn, &keyring, key, true))
            })
            .await
    }

    async fn rotate_signing_keys(
        &self,
        new_keys: Vec<StoredSigningKey>,
        retire_previous_at: Timestamp,
    ) -> StoreResult<()> {
        let keyring = std::sync::Arc::clone(&self.keyring);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                rotate(conn, &keyring, &new_keys, retire_previous_at)
            })
            .await
    }
}
