//! Herald's own asymmetric signing keys (for per-job webhooks and the
//! JWKS): the [`SigningKeyStore`] sub-trait and its values. Private keys
//! pass through `store::sealing` on their way in and out.
//!
//! Semantics every backend keeps: at most one *current* key (no
//! `retire_time`) per algorithm, across every node; `rotate` retires the
//! current key at the given instant and inserts its successor in one
//! transaction; listings show keys not yet retired at `now`.

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::StoreResult;
use crate::domain::Timestamp;

/// The algorithms Herald signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519: Standard Webhooks `v1a` and JWT `EdDSA`.
    EdDsa,
    /// RSA 2048: JWT `RS256`.
    Rs256,
}

impl KeyAlgorithm {
    pub const ALL: [Self; 2] = [Self::EdDsa, Self::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.as_str() == text)
    }
}

#[derive(Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// `whsk_…` (Ed25519) or PKCS#8 PEM (RSA).
    pub private_key: Zeroizing<String>,
    pub create_time: Timestamp,
    /// `None`: the algorithm's current signer.
    pub retire_time: Option<Timestamp>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("retire_time", &self.retire_time)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Keys not retired at `now`, oldest first.
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<StoredSigningKey>>;
    /// Stores each candidate whose algorithm has no current key (the
    /// first node to get there wins; the others' candidates are dropped).
    async fn init_signing_keys(&self, candidates: Vec<StoredSigningKey>) -> StoreResult<()>;
    /// For each new key: retires its algorithm's current key at
    /// `retire_previous_at` and makes the new key current.
    async fn rotate_signing_keys(
        &self,
        new_keys: Vec<StoredSigningKey>,
        retire_previous_at: Timestamp,
    ) -> StoreResult<()>;
}
