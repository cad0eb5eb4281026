//! Herald's own asymmetric keys: what signs per-job webhooks (whose
//! receivers never saw a shared secret) and what `/.well-known/jwks.json`
//! publishes.
//!
//! One Ed25519 key (Standard Webhooks `v1a`, JWT `EdDSA`) and one RSA key
//! (JWT `RS256`) are current at a time. They are generated on first use
//! (RSA generation takes about a second, so a deployment that never uses
//! them never pays it) and rotated by [`ServerKeys::rotate`]: the new key
//! signs at once; the previous one stays published, and for `v1a` keeps
//! signing beside the new one, until the overlap ends.
//!
//! Nodes read the keys from the store and keep them for [`REFRESH`] (by
//! the injected clock), so a rotation on one node reaches the others
//! within that time; the overlap covers the gap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_signature::{Ed25519SecretKey, JwkSet, JwtSigner, JwtSigningKey, KeyId, RsaPrivateKey, Signer, SigningKey};
use zeroize::Zeroizing;

use crate::clock::SharedClock;
use crate::domain::Timestamp;
use crate::store::{KeyAlgorithm, Store, StoreError, StoreResult, StoredSigningKey};

/// How long a node uses the keys it read before reading them again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// How long a rotated-out key stays published (and signing, for `v1a`)
/// unless the rotation says otherwise.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// The `iss` of every JWT Herald signs.
pub const ISSUER: &str = "herald";

/// A key as the admin API shows it (never its private part).
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: &'static str,
    pub create_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retire_time: Option<Timestamp>,
}

/// The signers and the public set made from the keys in force.
pub struct Keyring {
    pub jwks: JwkSet,
    /// `v1a` with every published Ed25519 key (new and, in the overlap, old).
    pub standard: Signer,
    pub rs256: JwtSigner,
    pub eddsa: JwtSigner,
    pub keys: Vec<KeyInfo>,
}

pub struct ServerKeys {
    store: Arc<dyn Store>,
    clock: SharedClock,
    cache: Mutex<Option<(Timestamp, Arc<Keyring>)>>,
}

impl ServerKeys {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            cache: Mutex::new(None),
        }
    }

    /// The keys in force (generating them on first use).
    pub async fn keyring(&self) -> StoreResult<Arc<Keyring>> {
        let now = self.clock.now();
        if let Some((loaded, keyring)) = self.cached()
            && now.duration_since(loaded) < REFRESH
            && now >= loaded
        {
            return Ok(keyring);
        }
        let mut stored = self.store.signing_keys(now).await?;
        let missing: Vec<KeyAlgorithm> = KeyAlgorithm::ALL
            .into_iter()
            .filter(|alg| {
                !stored
                    .iter()
                    .any(|key| key.algorithm == *alg && key.retire_time.is_none())
            })
            .collect();
        if !missing.is_empty() {
            self.store.init_signing_keys(generate(&missing, now).await?).await?;
            stored = self.store.signing_keys(now).await?;
        }
        self.remember(now, &stored)
    }

    /// Makes new keys current; the previous ones retire after `overlap`.
    pub async fn rotate(&self, overlap: Duration) -> StoreResult<Arc<Keyring>> {
        let now = self.clock.now();
        let new_keys = generate(&KeyAlgorithm::ALL, now).await?;
        self.store
            .rotate_signing_keys(new_keys, now.saturating_add(overlap))
            .await?;
        let stored = self.store.signing_keys(now).await?;
        self.remember(now, &stored)
    }

    fn cached(&self) -> Option<(Timestamp, Arc<Keyring>)> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn remember(&self, now: Timestamp, stored: &[StoredSigningKey]) -> StoreResult<Arc<Keyring>> {
        let keyring = Arc::new(keyring(stored)?);
        *self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, Arc::clone(&keyring)));
        Ok(keyring)
    }
}

/// New keys for `algorithms`, made off the async threads (RSA is slow).
async fn generate(algorithms: &[KeyAlgorithm], now: Timestamp) -> StoreResult<Vec<StoredSigningKey>> {
    let algorithms = algorithms.to_vec();
    tokio::task::spawn_blocking(move || {
        algorithms
            .into_iter()
            .map(|algorithm| {
                let private_key = match algorithm {
                    KeyAlgorithm::EdDsa => Ed25519SecretKey::try_generate()
                        .map_err(|e| StoreError::Unavailable(format!("generating a key: {e}")))?
                        .expose_secret(),
                    KeyAlgorithm::Rs256 => RsaPrivateKey::generate()
                        .and_then(|key| key.expose_pkcs8_pem())
                        .map_err(|e| StoreError::Unavailable(format!("generating a key: {e}")))?,
                };
                Ok(StoredSigningKey {
                    kid: format!(
                        "herald-{}-{}",
                        algorithm.as_str().to_ascii_lowercase(),
                        ulid::Ulid::generate()
                    ),
                    algorithm,
                    private_key,
                    create_time: now,
                    retire_time: None,
                })
            })
            .collect()
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("generating keys: {e}")))?
}

fn corrupt(kid: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("signing key {kid}: {error}"))
}

/// Builds the signers: the newest current key of each algorithm signs
/// JWTs; every published Ed25519 key signs `v1a`.
fn keyring(stored: &[StoredSigningKey]) -> StoreResult<Keyring> {
    let mut public = Vec::new();
    let mut standard = Vec::new();
    let mut rs256 = None;
    let mut eddsa = None;
    for key in stored {
        let kid = KeyId::parse(&key.kid).map_err(|e| corrupt(&key.kid, e))?;
        let secret = parse_private(key)?;
        if let JwtSigningKey::Ed25519(ed) = &secret {
            let text: Zeroizing<String> = ed.expose_secret();
            standard.push(SigningKey::parse(&text).map_err(|e| corrupt(&key.kid, e))?);
        }
        public.push((kid.clone(), secret.public_key()));
        if key.retire_time.is_none() {
            let signer = JwtSigner::new(kid, secret, ISSUER).map_err(|e| corrupt(&key.kid, e))?;
            match key.algorithm {
                KeyAlgorithm::Rs256 => rs256 = Some(signer),
                KeyAlgorithm::EdDsa => eddsa = Some(signer),
            }
        }
    }
    // The newest Ed25519 key first in the v1a header.
    standard.reverse();
    let missing = || StoreError::Corrupt("no current signing key for an algorithm".into());
    Ok(Keyring {
        jwks: JwkSet::new(public).map_err(|e| StoreError::Corrupt(format!("the JWKS: {e}")))?,
        standard: Signer::new(standard).map_err(|e| StoreError::Corrupt(format!("the v1a signer: {e}")))?,
        rs256: rs256.ok_or_else(missing)?,
        eddsa: eddsa.ok_or_else(missing)?,
        keys: stored
            .iter()
            .map(|key| KeyInfo {
                kid: key.kid.clone(),
                algorithm: key.algorithm.as_str(),
                create_time: key.create_time,
                retire_time: key.retire_time,
            })
            .collect(),
    })
}

fn parse_private(key: &StoredSigningKey) -> StoreResult<JwtSigningKey> {
    Ok(match key.algorithm {
        KeyAlgorithm::EdDsa => {
            JwtSigningKey::Ed25519(Ed25519SecretKey::parse(&key.private_key).map_err(|e| corrupt(&key.kid, e))?)
        }
        KeyAlgorithm::Rs256 => {
            JwtSigningKey::Rsa(RsaPrivateKey::from_pkcs8_pem(&key.private_key).map_err(|e| corrupt(&key.kid, e))?)
        }
    })
}
