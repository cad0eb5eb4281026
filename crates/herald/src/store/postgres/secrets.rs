//! SQL for signing secrets: sealed on insert, opened for the dispatcher,
//! rotated, purged, and sealed anew under another master key.
//!
//! Locking: the `settings` row naming the key in force is read `FOR SHARE`
//! by every insert of a secret and updated by a master-key rotation, so a
//! secret sealed under the old key commits before the rotation's switch
//! (and is then resealed by it) or sees the new key: none is left behind.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::connect::store_error;
use super::rows::{get, parsed, parsed_opt};
use crate::domain::secret::{Keyring, MasterKeyId, SealedSecret, SecretBinding, SecretMaterial, UnsealError};
use crate::domain::webhook::Webhook;
use crate::domain::{SecretId, SigningKind, Timestamp, WebhookId};
use crate::store::{
    MASTER_KEY_SETTING, NewSecret, Progress, RESEAL_CHUNK, RotateSigningSecret, StoreError, StoreResult, StoredSecret,
    check_master_keys,
};

/// The key in force; `lock` takes the row `FOR SHARE` (see the module doc).
pub(super) async fn key_in_force(client: &impl GenericClient, lock: bool) -> StoreResult<Option<MasterKeyId>> {
    let sql = if lock {
        "SELECT value FROM settings WHERE name = $1 FOR SHARE"
    } else {
        "SELECT value FROM settings WHERE name = $1"
    };
    let row = client
        .query_opt(sql, &[&MASTER_KEY_SETTING])
        .await
        .map_err(store_error)?;
    row.map(|row| {
        let bytes: Vec<u8> = get(&row, 0)?;
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(MasterKeyId::parse)
            .ok_or_else(|| StoreError::Corrupt("the recorded master key id is not valid".into()))
    })
    .transpose()
}

/// Every master key a row is sealed under: webhook secrets' and Herald's
/// own signing keys'.
async fn keys_in_use(client: &impl GenericClient) -> StoreResult<Vec<MasterKeyId>> {
    let mut keys = client
        .query(
            "SELECT DISTINCT key_id FROM webhook_secrets WHERE key_id IS NOT NULL",
            &[],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| parsed(row, 0, "master key id", MasterKeyId::parse))
        .collect::<StoreResult<Vec<_>>>()?;
    for key in super::signing_keys::keys_in_use(client).await? {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// At open, in the caller's transaction: checks the keyring against the
/// database (a wrong or missing key fails here, with one line), records
/// the key in force on a new database, and seals plaintext rows left by a
/// version before sealing (webhook secrets, and Herald's own `plain:`
/// signing keys). Returns how many rows it sealed.
pub(super) async fn prepare(client: &impl GenericClient, keyring: &Keyring) -> StoreResult<u64> {
    let in_use = keys_in_use(client).await?;
    let in_force = check_master_keys(keyring, key_in_force(client, false).await?.as_ref(), &in_use)?;
    client
        .execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&MASTER_KEY_SETTING, &in_force.as_str().as_bytes()],
        )
        .await
        .map_err(store_error)?;
    // Another node may have recorded its key first.
    let in_force = check_master_keys(keyring, key_in_force(client, true).await?.as_ref(), &in_use)?;
    let legacy = client
        .query(
            "SELECT webhook_id, id, secret FROM webhook_secrets WHERE key_id IS NULL AND kind IN ('hmac', 'ed25519') FOR UPDATE",
            &[],
        )
        .await
        .map_err(store_error)?;
    let mut sealed_count = 0;
    for row in &legacy {
        let binding = SecretBinding {
            webhook: parsed(row, 0, "webhook id", WebhookId::parse)?,
            secret: parsed(row, 1, "secret id", SecretId::parse)?,
        };
        let text = zeroize::Zeroizing::new(get::<Option<String>>(row, 2)?.unwrap_or_default());
        let material = SecretMaterial::parse(&text).map_err(|e| {
            StoreError::Corrupt(format!(
                "the plaintext signing secret {} is not valid: {e}",
                binding.secret
            ))
        })?;
        let sealed = seal(keyring, &in_force, &material, binding)?;
        write_sealed(client, binding.secret, &sealed, None).await?;
        sealed_count += 1;
    }
    sealed_count += super::signing_keys::seal_plain(client, keyring, &in_force).await?;
    Ok(sealed_count)
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
/// is still sealed under that key.
async fn write_sealed(
    client: &impl GenericClient,
    secret: SecretId,
    sealed: &SealedSecret,
    expected: Option<&MasterKeyId>,
) -> StoreResult<bool> {
    let changed = client
        .execute(
            "UPDATE webhook_secrets SET secret = NULL, key_id = $2, sealed = $3
             WHERE id = $1 AND ($4::TEXT IS NULL OR key_id = $4)",
            &[
                &secret.to_string(),
                &sealed.key_id.as_str(),
                &sealed.blob,
                &expected.map(MasterKeyId::as_str),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(changed > 0)
}

/// Inserts `secret` for `webhook`, sealed under the key in force.
pub(super) async fn insert_secret(
    client: &impl GenericClient,
    keyring: &Keyring,
    webhook: WebhookId,
    secret: &NewSecret,
    now: Timestamp,
) -> StoreResult<()> {
    let in_force = key_in_force(client, true)
        .await?
        .ok_or_else(|| StoreError::Corrupt("no master key is recorded as in force".into()))?;
    let sealed = seal(
        keyring,
        &in_force,
        &secret.material,
        SecretBinding {
            webhook,
            secret: secret.id,
        },
    )?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO webhook_secrets (id, webhook_id, kind, public_key, display, create_time, key_id, sealed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            &stmt,
            &[
                &secret.id.to_string(),
                &webhook.to_string(),
                &secret.material.kind().as_str(),
                &secret.material.public_key(),
                &secret.material.display(),
                &now.as_millis(),
                &sealed.key_id.as_str(),
                &sealed.blob,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The secrets that sign at `now` for each of `webhooks`, opened.
pub(super) async fn signing_secrets(
    client: &impl GenericClient,
    keyring: &Keyring,
    webhooks: Vec<String>,
    now: Timestamp,
) -> StoreResult<HashMap<WebhookId, Vec<StoredSecret>>> {
    if webhooks.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = client
        .prepare_cached(
            "SELECT webhook_id, id, key_id, sealed, kind FROM webhook_secrets
             WHERE webhook_id = ANY($1) AND (expire_time IS NULL OR expire_time > $2) ORDER BY id",
        )
        .await
        .map_err(store_error)?;
    let rows = client
        .query(&stmt, &[&webhooks, &now.as_millis()])
        .await
        .map_err(store_error)?;
    let mut secrets: HashMap<WebhookId, Vec<StoredSecret>> = HashMap::new();
    for row in &rows {
        let webhook = parsed(row, 0, "webhook id", WebhookId::parse)?;
        let id = parsed(row, 1, "secret id", SecretId::parse)?;
        let key_id = parsed_opt(row, 2, "master key id", MasterKeyId::parse)?;
        let blob: Option<Vec<u8>> = get(row, 3)?;
        let kind = parsed(row, 4, "signing kind", SigningKind::parse)?;
        if matches!(kind, SigningKind::Job(_)) {
            secrets.entry(webhook).or_default().push(StoredSecret {
                id,
                kind,
                material: Err(UnsealError::NoMaterial),
            });
            continue;
        }
        let (Some(key_id), Some(blob)) = (key_id, blob) else {
            return Err(StoreError::Corrupt(format!("the signing secret {id} is not sealed")));
        };
        let material = keyring.open(&SealedSecret { key_id, blob }, SecretBinding { webhook, secret: id });
        secrets
            .entry(webhook)
            .or_default()
            .push(StoredSecret { id, kind, material });
    }
    Ok(secrets)
}

/// See `SecretStore::rotate_signing_secret`.
pub(super) async fn rotate_signing_secret(
    client: &impl GenericClient,
    keyring: &Keyring,
    request: &RotateSigningSecret,
) -> StoreResult<Option<Webhook>> {
    let (project, webhook, now) = (request.project_id, request.webhook_id, request.now);
    // Locks the webhook: two rotations of one webhook run one after the other.
    let row = client
        .query_opt(
            "SELECT signing FROM webhooks WHERE id = $1 AND project_id = $2 AND delete_time IS NULL FOR NO KEY UPDATE",
            &[&webhook.to_string(), &project.to_string()],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let signing: String = get(&row, 0)?;
    if signing != request.secret.material.kind().as_str() {
        return Err(StoreError::Corrupt(format!(
            "a {} secret cannot sign for a {signing} webhook",
            request.secret.material.kind().as_str()
        )));
    }
    client
        .execute(
            "UPDATE webhook_secrets SET expire_time = LEAST(COALESCE(expire_time, $2), $2)
             WHERE webhook_id = $1 AND (expire_time IS NULL OR expire_time > $3)",
            &[
                &webhook.to_string(),
                &request.previous_expire_time.as_millis(),
                &now.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    client
        .execute(
            "DELETE FROM webhook_secrets WHERE webhook_id = $1 AND expire_time <= $2",
            &[&webhook.to_string(), &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    insert_secret(client, keyring, webhook, &request.secret, now).await?;
    client
        .execute(
            "UPDATE webhooks SET update_time = $2 WHERE id = $1",
            &[&webhook.to_string(), &now.as_millis()],
        )
        .await
        .map_err(store_error)?;
    super::webhooks::get_webhook(client, project, webhook, now).await
}

/// Secrets deleted per purge call.
const PURGE_CHUNK: i64 = 1_000;

pub(super) async fn purge_expired(client: &impl GenericClient, now: Timestamp) -> StoreResult<Progress> {
    let deleted = client
        .execute(
            "DELETE FROM webhook_secrets WHERE id IN
               (SELECT id FROM webhook_secrets WHERE expire_time <= $1 LIMIT $2)",
            &[&now.as_millis(), &PURGE_CHUNK],
        )
        .await
        .map_err(store_error)?;
    Ok(if deleted < u64::try_from(PURGE_CHUNK).unwrap_or(0) {
        Progress::Done(deleted)
    } else {
        Progress::More(deleted)
    })
}

/// One piece of a master-key rotation, in the caller's transaction: records
/// the keyring's primary as the key in force and seals up to
/// `RESEAL_CHUNK` rows sealed under other keys anew under it.
pub(super) async fn reseal_piece(client: &impl GenericClient, keyring: &Keyring) -> StoreResult<Progress> {
    let target = keyring.primary().id().clone();
    check_master_keys(
        keyring,
        key_in_force(client, false).await?.as_ref(),
        &keys_in_use(client).await?,
    )?;
    client
        .execute(
            "INSERT INTO settings (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&MASTER_KEY_SETTING, &target.as_str().as_bytes()],
        )
        .await
        .map_err(store_error)?;
    let rows = client
        .query(
            "SELECT webhook_id, id, key_id, sealed FROM webhook_secrets
             WHERE key_id IS NOT NULL AND key_id <> $1 LIMIT $2 FOR UPDATE",
            &[&target.as_str(), &i64::try_from(RESEAL_CHUNK).unwrap_or(0)],
        )
        .await
        .map_err(store_error)?;
    let mut count = 0u64;
    for row in &rows {
        let binding = SecretBinding {
            webhook: parsed(row, 0, "webhook id", WebhookId::parse)?,
            secret: parsed(row, 1, "secret id", SecretId::parse)?,
        };
        let key_id = parsed(row, 2, "master key id", MasterKeyId::parse)?;
        let blob: Vec<u8> = get(row, 3)?;
        let material = keyring
            .open(
                &SealedSecret {
                    key_id: key_id.clone(),
                    blob,
                },
                binding,
            )
            .map_err(|e| StoreError::MasterKey(e.to_string()))?;
        let sealed = seal(keyring, &target, &material, binding)?;
        if write_sealed(client, binding.secret, &sealed, Some(&key_id)).await? {
            count += 1;
        }
    }
    Ok(if rows.len() < RESEAL_CHUNK {
        Progress::Done(count)
    } else {
        Progress::More(count)
    })
}

/// Refuses a master-key rotation while a live node does not hold `key`:
/// once it is in force, such a node could open no secret sealed under it.
pub(super) async fn check_nodes_hold(client: &impl GenericClient, key: &MasterKeyId) -> StoreResult<()> {
    let lacking: Vec<String> = client
        .query(
            "SELECT name FROM nodes WHERE NOT ($1 = ANY(string_to_array(master_key_ids, ','))) ORDER BY name",
            &[&key.as_str()],
        )
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| get(row, 0))
        .collect::<StoreResult<_>>()?;
    if lacking.is_empty() {
        return Ok(());
    }
    Err(StoreError::MasterKey(format!(
        "nothing changed: running nodes {} do not hold master key {key}; restart each with HERALD_MASTER_KEY set to \
         the new key and the old one in HERALD_PREVIOUS_MASTER_KEYS, then rotate",
        lacking.join(", ")
    )))
}
