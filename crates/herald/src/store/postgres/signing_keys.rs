//! SQL for Herald's own signing keys, and the PostgreSQL
//! [`SigningKeyStore`]. The partial unique index on current keys makes
//! nodes starting together agree on one key per algorithm. Private keys
//! are sealed under the key in force on insert and opened on read
//! (`store::sealing`); this file only moves sealed bytes.
//!
//! Locking: an insert reads the key in force `FOR SHARE` (as a webhook
//! secret's insert does), so a key sealed under the old master key
//! commits before a master-key rotation's switch, and is then resealed by
//! the rotation's later pieces, or sees the new key.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use super::connect::store_error;
use super::rows::{get, parsed, parsed_opt, timestamp, timestamp_opt};
use super::secrets::key_in_force;
use crate::domain::Timestamp;
use crate::domain::secret::{Keyring, MasterKeyId, SealedSecret};
use crate::store::sealing::{open, open_plain, open_row, seal};
use crate::store::{KeyAlgorithm, Progress, RESEAL_CHUNK, SigningKeyStore, StoreError, StoreResult, StoredSigningKey};

async fn insert(
    client: &impl GenericClient,
    keyring: &Keyring,
    key: &StoredSigningKey,
    only_if_none: bool,
) -> StoreResult<()> {
    let in_force = key_in_force(client, true)
        .await?
        .ok_or_else(|| StoreError::Corrupt("no master key is recorded as in force".into()))?;
    let sealed = seal(keyring, &in_force, &key.kid, &key.private_key)?;
    let conflict = if only_if_none { " ON CONFLICT DO NOTHING" } else { "" };
    client
        .execute(
            &format!(
                "INSERT INTO signing_keys (kid, algorithm, private_key, create_time, retire_time, key_id, sealed)
                 VALUES ($1, $2, '', $3, NULL, $4, $5){conflict}"
            ),
            &[
                &key.kid,
                &key.algorithm.as_str(),
                &key.create_time.as_millis(),
                &sealed.key_id.as_str(),
                &sealed.blob,
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The master keys the signing keys are sealed under (checked at start
/// and before a rotation, with the webhook secrets').
pub(super) async fn keys_in_use(client: &impl GenericClient) -> StoreResult<Vec<MasterKeyId>> {
    client
        .query("SELECT DISTINCT key_id FROM signing_keys WHERE key_id IS NOT NULL", &[])
        .await
        .map_err(store_error)?
        .iter()
        .map(|row| parsed(row, 0, "master key id", MasterKeyId::parse))
        .collect()
}

/// Replaces a row's private key with `sealed`; with `expected`, only if
/// the row is still sealed under that key.
async fn write_sealed(
    client: &impl GenericClient,
    kid: &str,
    sealed: &SealedSecret,
    expected: Option<&MasterKeyId>,
) -> StoreResult<bool> {
    let changed = client
        .execute(
            "UPDATE signing_keys SET private_key = '', key_id = $2, sealed = $3
             WHERE kid = $1 AND ($4::TEXT IS NULL OR key_id = $4)",
            &[
                &kid,
                &sealed.key_id.as_str(),
                &sealed.blob,
                &expected.map(MasterKeyId::as_str),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(changed > 0)
}

/// At open, in the caller's transaction (after the master keys were
/// checked): seals the `plain:` rows a Herald before sealing wrote, under
/// the key in force. Returns how many.
pub(super) async fn seal_plain(
    client: &impl GenericClient,
    keyring: &Keyring,
    in_force: &MasterKeyId,
) -> StoreResult<u64> {
    let rows = client
        .query(
            "SELECT kid, private_key FROM signing_keys WHERE key_id IS NULL FOR UPDATE",
            &[],
        )
        .await
        .map_err(store_error)?;
    let mut count = 0;
    for row in &rows {
        let kid: String = get(row, 0)?;
        let stored = zeroize::Zeroizing::new(get::<String>(row, 1)?);
        let private_key = open_plain(&kid, &stored)?;
        let sealed = seal(keyring, in_force, &kid, &private_key)?;
        write_sealed(client, &kid, &sealed, None).await?;
        count += 1;
    }
    Ok(count)
}

/// One piece of a master-key rotation, in the caller's transaction, after
/// the webhook secrets' pieces recorded the keyring's primary as the key
/// in force: seals up to `RESEAL_CHUNK` signing keys sealed under other
/// keys anew under it.
pub(super) async fn reseal_piece(client: &impl GenericClient, keyring: &Keyring) -> StoreResult<Progress> {
    let target = keyring.primary().id().clone();
    let rows = client
        .query(
            "SELECT kid, key_id, sealed FROM signing_keys WHERE key_id IS NOT NULL AND key_id <> $1 LIMIT $2 FOR UPDATE",
            &[&target.as_str(), &i64::try_from(RESEAL_CHUNK).unwrap_or(0)],
        )
        .await
        .map_err(store_error)?;
    let mut count = 0u64;
    for row in &rows {
        let kid: String = get(row, 0)?;
        let key_id = parsed(row, 1, "master key id", MasterKeyId::parse)?;
        let blob: Vec<u8> = get(row, 2)?;
        let private_key = open(
            keyring,
            &kid,
            &SealedSecret {
                key_id: key_id.clone(),
                blob,
            },
        )?;
        let sealed = seal(keyring, &target, &kid, &private_key)?;
        if write_sealed(client, &kid, &sealed, Some(&key_id)).await? {
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
impl SigningKeyStore for PostgresStore {
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kid, algorithm, key_id, sealed, create_time, retire_time FROM signing_keys
                 WHERE retire_time IS NULL OR retire_time > $1 ORDER BY create_time, kid",
                &[&now.as_millis()],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let kid: String = get(row, 0)?;
                let algorithm: String = get(row, 1)?;
                Ok(StoredSigningKey {
                    algorithm: KeyAlgorithm::parse(&algorithm)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown signing key algorithm {algorithm:?}")))?,
                    private_key: open_row(
                        &self.keyring,
                        &kid,
                        parsed_opt(row, 2, "master key id", MasterKeyId::parse)?,
                        get(row, 3)?,
                    )?,
                    kid,
                    create_time: timestamp(row, 4)?,
                    retire_time: timestamp_opt(row, 5)?,
                })
            })
            .collect()
    }

    async fn init_signing_keys(&self, candidates: Vec<StoredSigningKey>) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        for key in &candidates {
            insert(&tx, &self.keyring, key, true).await?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn rotate_signing_keys(
        &self,
        new_keys: Vec<StoredSigningKey>,
        retire_previous_at: Timestamp,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(store_error)?;
        for key in &new_keys {
            tx.execute(
                "UPDATE signing_keys SET retire_time = $2 WHERE algorithm = $1 AND retire_time IS NULL",
                &[&key.algorithm.as_str(), &retire_previous_at.as_millis()],
            )
            .await
            .map_err(store_error)?;
            insert(&tx, &self.keyring, key, false).await?;
        }
        tx.commit().await.map_err(store_error)
    }
}
