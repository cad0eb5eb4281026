//! SQL for Herald's own signing keys, and the PostgreSQL
//! [`SigningKeyStore`]. The partial unique index on current keys makes
//! nodes starting together agree on one key per algorithm.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use super::connect::store_error;
use super::rows::{get, timestamp, timestamp_opt};
use crate::domain::Timestamp;
use crate::store::sealing::{open, seal};
use crate::store::{KeyAlgorithm, SigningKeyStore, StoreError, StoreResult, StoredSigningKey};

async fn insert(client: &impl GenericClient, key: &StoredSigningKey, only_if_none: bool) -> StoreResult<()> {
    let conflict = if only_if_none { " ON CONFLICT DO NOTHING" } else { "" };
    client
        .execute(
            &format!(
                "INSERT INTO signing_keys (kid, algorithm, private_key, create_time, retire_time)
                 VALUES ($1, $2, $3, $4, NULL){conflict}"
            ),
            &[
                &key.kid,
                &key.algorithm.as_str(),
                &seal(&key.private_key),
                &key.create_time.as_millis(),
            ],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl SigningKeyStore for PostgresStore {
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kid, algorithm, private_key, create_time, retire_time FROM signing_keys
                 WHERE retire_time IS NULL OR retire_time > $1 ORDER BY create_time, kid",
                &[&now.as_millis()],
            )
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                let algorithm: String = get(row, 1)?;
                Ok(StoredSigningKey {
                    kid: get(row, 0)?,
                    algorithm: KeyAlgorithm::parse(&algorithm)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown signing key algorithm {algorithm:?}")))?,
                    private_key: open(&get::<String>(row, 2)?)?,
                    create_time: timestamp(row, 3)?,
                    retire_time: timestamp_opt(row, 4)?,
                })
            })
            .collect()
    }

    async fn init_signing_keys(&self, candidates: Vec<StoredSigningKey>) -> StoreResult<()> {
        let client = self.client().await?;
        for key in &candidates {
            insert(&client, key, true).await?;
        }
        Ok(())
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
            insert(&tx, key, false).await?;
        }
        tx.commit().await.map_err(store_error)
    }
}
