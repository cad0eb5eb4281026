//! SQL for signing secrets: sealed on insert, opened for the dispatcher,
//! rotated, purged, and sealed anew under another master key.
//!
//! Sealing and opening are `domain::secret::Keyring`'s; this file only
//! moves sealed bytes in and out of `webhook_secrets`.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{parsed, parsed_opt, store_error};
use crate::domain::secret::{Keyring, MasterKeyId, SealedSecret, SecretBinding, SecretMaterial, UnsealError};
use crate::domain::{SecretId, SigningKind, Timestamp, WebhookId};
use crate::store::{
    MASTER_KEY_SETTING, NewSecret, Progress, RESEAL_CHUNK, StoreError, StoreResult, StoredSecret, check_master_keys,
};

/// The key in force, as recorded.
pub(super) fn key_in_force(conn: &Connection) -> StoreResult<Option<MasterKeyId>> {
    let text: Option<Vec<u8>> = conn
        .prepare_cached("SELECT value FROM settings WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([MASTER_KEY_SETTING], |row| row.get(0)).optional())
        .map_err(store_error)?;
    text.map(|bytes| {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(MasterKeyId::parse)
            .ok_or_else(|| StoreError::Corrupt("the recorded master key id is not valid".into()))
    })
    .transpose()
}

fn record_key_in_force(conn: &Connection, id: &MasterKeyId) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut stmt| stmt.execute(params![MASTER_KEY_SETTING, id.as_str().as_bytes()]))
    .map(drop)
    .map_err(store_error)
}

/// Every master key a row is sealed under: webhook secrets' and Herald's
/// own signing keys'.
fn keys_in_use(conn: &Connection) -> StoreResult<Vec<MasterKeyId>> {
    let mut keys: Vec<MasterKeyId> = conn
        .prepare_cached("SELECT DISTINCT key_id FROM webhook_secrets WHERE key_id IS NOT NULL")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| parsed(row, 0, "master key id", MasterKeyId::parse))?
                .collect()
        })
        .map_err(store_error)?;
    for key in super::signing_keys::keys_in_use(conn)? {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// At open, in one transaction: checks the keyring against the database
/// (a wrong or missing key fails here, with one line), records the key in
/// force on a new database, and seals plaintext rows left by a version
/// before sealing (webhook secrets, and Herald's own `plain:` signing
/// keys). Returns how many rows it sealed. With `secure_delete`
/// on, the plaintext's old bytes are overwritten in the file; the caller
/// then truncates the WAL, which held them too.
pub(super) fn prepare(conn: &mut Connection, keyring: &Keyring) -> StoreResult<u64> {
    conn.execute_batch("PRAGMA secure_delete = ON").map_err(store_error)?;
    let tx = conn.transaction().map_err(store_error)?;
    let in_force = check_master_keys(keyring, key_in_force(&tx)?.as_ref(), &keys_in_use(&tx)?)?;
    record_key_in_force(&tx, &in_force)?;
    let legacy: Vec<(SecretBinding, String)> = tx
        .prepare(
            "SELECT webhook_id, id, secret FROM webhook_secrets WHERE key_id IS NULL AND kind IN ('hmac', 'ed25519')",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |row| {
                Ok((
                    SecretBinding {
                        webhook: parsed(row, 0, "webhook id", WebhookId::parse)?,
                        secret: parsed(row, 1, "secret id", SecretId::parse)?,
                    },
                    row.get::<_, String>(2)?,
                ))
            })?
            .collect()
        })
        .map_err(store_error)?;
    let mut sealed_count = legacy.len();
    for (binding, text) in legacy {
        let text = zeroize::Zeroizing::new(text);
        let material = SecretMaterial::parse(&text).map_err(|e| {
            StoreError::Corrupt(format!(
                "the plaintext signing secret {} is not valid: {e}",
                binding.secret
            ))
        })?;
        let sealed = seal(keyring, &in_force, &material, binding)?;
        write_sealed(&tx, binding.secret, &sealed, None)?;
    }
    let keys = super::signing_keys::seal_plain(&tx, keyring, &in_force)?;
    sealed_count += usize::try_from(keys).unwrap_or(usize::MAX);
    tx.commit().map_err(store_error)?;
    conn.execute_batch("PRAGMA secure_delete = OFF").map_err(store_error)?;
    if sealed_count > 0 {
        // The WAL still holds pages with the plaintext: copy the sealed
        // pages back into the database and empty it.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(store_error)?;
    }
    Ok(u64::try_from(sealed_count).unwrap_or(u64::MAX))
}

fn seal(
    keyring: &Keyring,
    key: &MasterKeyId,
    material: &SecretMaterial,
    binding: SecretBinding,
) -> StoreResult<SealedSecret> {
    keyring
        .seal(key, material, binding)
        .map_err(|e| StoreError::MasterKey(e.message))
}

/// Replaces a row's secret with `sealed`; with `expected`, only if the row
/// is still sealed under that key (a concurrent rotation's fence).
fn write_sealed(
    conn: &Connection,
    secret: SecretId,
    sealed: &SealedSecret,
    expected: Option<&MasterKeyId>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE webhook_secrets SET secret = '', key_id = ?2, sealed = ?3
             WHERE id = ?1 AND (?4 IS NULL OR key_id = ?4)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                secret.to_string(),
                sealed.key_id.as_str(),
                sealed.blob,
                expected.map(MasterKeyId::as_str)
            ])
        })
        .map_err(store_error)?;
    Ok(changed > 0)
}

/// Inserts `secret` for `webhook`, sealed under the key in force.
pub(super) fn insert_secret(
    conn: &Connection,
    keyring: &Keyring,
    webhook: WebhookId,
    secret: &NewSecret,
    now: Timestamp,
) -> StoreResult<()> {
    let in_force =
        key_in_force(conn)?.ok_or_else(|| StoreError::Corrupt("no master key is recorded as in force".into()))?;
    let sealed = seal(
        keyring,
        &in_force,
        &secret.material,
        SecretBinding {
            webhook,
            secret: secret.id,
        },
    )?;
    conn.prepare_cached(
        "INSERT INTO webhook_secrets (id, webhook_id, kind, secret, public_key, display, create_time, key_id, sealed)
         VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            secret.id.to_string(),
            webhook.to_string(),
            secret.material.kind().as_str(),
            secret.material.public_key(),
            secret.material.display(),
            now.as_millis(),
            sealed.key_id.as_str(),
            sealed.blob,
        ])
    })
    .map(drop)
    .map_err(store_error)
}

/// A secret row as read: id, kind, the master key that sealed it, the
/// sealed bytes (none for rows that hold no material).
type SecretRow = (SecretId, SigningKind, Option<MasterKeyId>, Option<Vec<u8>>);

/// The secrets that sign for `webhook` at `now`, opened.
pub(super) fn signing_secrets(
    conn: &Connection,
    keyring: &Keyring,
    webhook: WebhookId,
    now: Timestamp,
) -> StoreResult<Vec<StoredSecret>> {
    let rows: Vec<SecretRow> = conn
        .prepare_cached(
            "SELECT id, kind, key_id, sealed FROM webhook_secrets
             WHERE webhook_id = ?1 AND (expire_time IS NULL OR expire_time > ?2) ORDER BY id",
        )
        .and_then(|mut stmt| {
            stmt.query_map(params![webhook.to_string(), now.as_millis()], |row| {
                Ok((
                    parsed(row, 0, "secret id", SecretId::parse)?,
                    parsed(row, 1, "signing kind", SigningKind::parse)?,
                    parsed_opt(row, 2, "master key id", MasterKeyId::parse)?,
                    row.get(3)?,
                ))
            })?
            .collect()
        })
        .map_err(store_error)?;
    rows.into_iter()
        .map(|(id, kind, key_id, blob)| {
            if matches!(kind, SigningKind::Job(_)) {
                return Ok(StoredSecret {
                    id,
                    kind,
                    material: Err(UnsealError::NoMaterial),
                });
            }
            let (Some(key_id), Some(blob)) = (key_id, blob) else {
                return Err(StoreError::Corrupt(format!("the signing secret {id} is not sealed")));
            };
            let binding = SecretBinding { webhook, secret: id };
            Ok(StoredSecret {
                id,
                kind,
                material: keyring.open(&SealedSecret { key_id, blob }, binding),
            })
        })
        .collect()
}

/// Makes the secrets signing at `now` stop at `expire_time` (or keep an
/// earlier time) and deletes those that no longer sign.
pub(super) fn retire_current(
    conn: &Connection,
    webhook: WebhookId,
    expire_time: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE webhook_secrets SET expire_time = MIN(COALESCE(expire_time, ?2), ?2)
         WHERE webhook_id = ?1 AND (expire_time IS NULL OR expire_time > ?3)",
    )
    .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), expire_time.as_millis(), now.as_millis()]))
    .map_err(store_error)?;
    conn.prepare_cached("DELETE FROM webhook_secrets WHERE webhook_id = ?1 AND expire_time <= ?2")
        .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), now.as_millis()]))
        .map(drop)
        .map_err(store_error)
}

/// Secrets deleted per purge call.
const PURGE_CHUNK: usize = 1_000;

pub(super) fn purge_expired(conn: &Connection, now: Timestamp) -> StoreResult<Progress> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM webhook_secrets WHERE id IN
               (SELECT id FROM webhook_secrets WHERE expire_time <= ?1 LIMIT ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![now.as_millis(), i64::try_from(PURGE_CHUNK).unwrap_or(0)]))
        .map_err(store_error)?;
    let count = u64::try_from(deleted).unwrap_or(u64::MAX);
    Ok(if deleted < PURGE_CHUNK {
        Progress::Done(count)
    } else {
        Progress::More(count)
    })
}

/// One piece of a master-key rotation: records the keyring's primary as
/// the key in force and seals up to `RESEAL_CHUNK` rows sealed under other
/// keys anew under it.
pub(super) fn reseal_piece(conn: &Connection, keyring: &Keyring) -> StoreResult<Progress> {
    let target = keyring.primary().id().clone();
    check_master_keys(keyring, key_in_force(conn)?.as_ref(), &keys_in_use(conn)?)?;
    record_key_in_force(conn, &target)?;
    let rows: Vec<(WebhookId, SecretId, MasterKeyId, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT webhook_id, id, key_id, sealed FROM webhook_secrets
             WHERE key_id IS NOT NULL AND key_id <> ?1 LIMIT ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_map(
                params![target.as_str(), i64::try_from(RESEAL_CHUNK).unwrap_or(0)],
                |row| {
                    Ok((
                        parsed(row, 0, "webhook id", WebhookId::parse)?,
                        parsed(row, 1, "secret id", SecretId::parse)?,
                        parsed(row, 2, "master key id", MasterKeyId::parse)?,
                        row.get(3)?,
                    ))
                },
            )?
            .collect()
        })
        .map_err(store_error)?;
    let mut count = 0u64;
    for (webhook, secret, key_id, blob) in &rows {
        let binding = SecretBinding {
            webhook: *webhook,
            secret: *secret,
        };
        let material = keyring
            .open(
                &SealedSecret {
                    key_id: key_id.clone(),
                    blob: blob.clone(),
                },
                binding,
            )
            .map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let sealed = seal(keyring, &target, &material, binding)?;
        if write_sealed(conn, *secret, &sealed, Some(key_id))? {
            count += 1;
        }
    }
    Ok(if rows.len() < RESEAL_CHUNK {
        Progress::Done(count)
    } else {
        Progress::More(count)
    })
}

/// See `SecretStore::rotate_signing_secret`.
pub(super) fn rotate_signing_secret(
    conn: &Connection,
    keyring: &Keyring,
    request: &crate::store::RotateSigningSecret,
) -> StoreResult<Option<crate::domain::webhook::Webhook>> {
    let (project, webhook, now) = (request.project_id, request.webhook_id, request.now);
    let Some(current) = super::webhooks::load_webhook(conn, project, webhook, now)? else {
        return Ok(None);
    };
    if current.signing != request.secret.material.kind() {
        return Err(StoreError::Corrupt(format!(
            "a {} secret cannot sign for a {} webhook",
            request.secret.material.kind().as_str(),
            current.signing.as_str()
        )));
    }
    retire_current(conn, webhook, request.previous_expire_time, now)?;
    insert_secret(conn, keyring, webhook, &request.secret, now)?;
    conn.prepare_cached("UPDATE webhooks SET update_time = ?2 WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute(params![webhook.to_string(), now.as_millis()]))
        .map_err(store_error)?;
    super::webhooks::load_webhook(conn, project, webhook, now)
}
