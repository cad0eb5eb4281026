//! Sealing secrets for the database: XChaCha20-Poly1305 under a master key,
//! bound to the row that holds them.
//!
//! Sealed form: one version byte (1), a random 24-byte nonce, then the
//! ciphertext and its 16-byte tag. The associated data ([`Binding`]) names
//! what the blob is and the row that holds it: a webhook secret (webhook and
//! secret ids) or one of Herald's own private signing keys (its kid), each
//! under a distinct label, so a sealed blob copied into another row, or
//! from one table into the other, fails to open rather than sign.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::master_key::{MasterKey, MasterKeyId};
use super::material::SecretMaterial;
use crate::domain::{Invalid, SecretId, WebhookId};

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 24;

/// The master keys a node holds: the one it seals with when the database
/// names no other (`primary`, from `HERALD_MASTER_KEY`), and older ones it
/// can still open during a master-key rotation.
#[derive(Clone, Debug)]
pub struct Keyring {
    primary: MasterKey,
    previous: Vec<MasterKey>,
}

/// A secret as the database holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSecret {
    /// The master key that sealed it.
    pub key_id: MasterKeyId,
    /// Version, nonce, ciphertext and tag.
    pub blob: Vec<u8>,
}

/// The row a sealed secret belongs to: the AEAD's associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretBinding {
    pub webhook: WebhookId,
    pub secret: SecretId,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// The row names a master key this node does not hold.
    #[error(
        "signing secrets are sealed under master key {0}, which this node does not hold (set HERALD_MASTER_KEY, or list it in HERALD_PREVIOUS_MASTER_KEYS)"
    )]
    UnknownKey(MasterKeyId),
    /// Wrong key for the id (impossible unless ids collide), tampering, or
    /// a sealed secret moved to another row.
    #[error("the sealed signing secret {0} does not open: it was altered or moved from another row")]
    Tampered(SecretId),
    #[error("the sealed signing secret {secret} holds no valid secret: {problem}")]
    Malformed { secret: SecretId, problem: String },
    /// A per-job webhook's row: it signs with Herald's own keys, never
    /// with stored material.
    #[error("a per-job webhook has no signing secret of its own (Herald's keys sign it)")]
    NoMaterial,
}

/// What a sealed blob is bound to: the AEAD's associated data. Each
/// variant has its own label, so no blob of one kind opens as the other.
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// A webhook's signing secret (`webhook_secrets`).
    WebhookSecret(SecretBinding),
    /// One of Herald's own private signing keys (`signing_keys`), by kid.
    SigningKey { kid: &'a str },
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        match self {
            Self::WebhookSecret(b) => format!("herald/webhook-secret/v1\0{}\0{}", b.webhook, b.secret).into_bytes(),
            Self::SigningKey { kid } => format!("herald/signing-key/v1\0{kid}").into_bytes(),
        }
    }
}

/// Why sealed bytes do not open (the caller names the row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenFailure {
    /// The row names a master key this node does not hold.
    UnknownKey(MasterKeyId),
    /// Wrong key, tampering, or a blob moved from another row.
    Tampered,
    /// Not a blob this version writes.
    Malformed(&'static str),
}

impl Keyring {
    /// `previous` may repeat `primary` or each other: duplicates are dropped.
    pub fn new(primary: MasterKey, previous: Vec<MasterKey>) -> Self {
        let mut kept: Vec<MasterKey> = Vec::new();
        for key in previous {
            if key.id() != primary.id() && kept.iter().all(|k| k.id() != key.id()) {
                kept.push(key);
            }
        }
        Self {
            primary,
            previous: kept,
        }
    }

    pub fn primary(&self) -> &MasterKey {
        &self.primary
    }

    /// Whether this node holds the key with this id.
    pub fn holds(&self, id: &MasterKeyId) -> bool {
        self.key(id).is_some()
    }

    /// The ids of every key held, the primary first.
    pub fn ids(&self) -> Vec<MasterKeyId> {
        std::iter::once(&self.primary)
            .chain(&self.previous)
            .map(|k| k.id().clone())
            .collect()
    }

    fn key(&self, id: &MasterKeyId) -> Option<&MasterKey> {
        std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }

    /// Seals `material` for the row `binding` under the held key `key_id`.
    pub fn seal(
        &self,
        key_id: &MasterKeyId,
        material: &SecretMaterial,
        binding: SecretBinding,
    ) -> Result<SealedSecret, Invalid> {
        let plaintext = material.expose_secret();
        self.seal_bytes(key_id, plaintext.as_bytes(), Binding::WebhookSecret(binding))
    }

    /// Opens a sealed secret read from the row `binding`.
    pub fn open(&self, sealed: &SealedSecret, binding: SecretBinding) -> Result<SecretMaterial, UnsealError> {
        let malformed = |problem: &str| UnsealError::Malformed {
            secret: binding.secret,
            problem: problem.to_owned(),
        };
        let plaintext = self
            .open_bytes(sealed, Binding::WebhookSecret(binding))
            .map_err(|failure| match failure {
                OpenFailure::UnknownKey(id) => UnsealError::UnknownKey(id),
                OpenFailure::Tampered => UnsealError::Tampered(binding.secret),
                OpenFailure::Malformed(problem) => malformed(problem),
            })?;
        let text = std::str::from_utf8(&plaintext).map_err(|_| malformed("not text"))?;
        SecretMaterial::parse(text).map_err(|e| malformed(&e.message))
    }

    /// Seals `plaintext` for `binding` under the held key `key_id`.
    pub fn seal_bytes(
        &self,
        key_id: &MasterKeyId,
        plaintext: &[u8],
        binding: Binding<'_>,
    ) -> Result<SealedSecret, Invalid> {
        let key = self
            .key(key_id)
            .ok_or_else(|| Invalid::new(UnsealError::UnknownKey(key_id.clone()).to_string()))?;
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce)
            .map_err(|e| Invalid::new(format!("the operating system's random source failed: {e}")))?;
        let aad = binding.associated_data();
        let ciphertext = cipher(key)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Invalid::new("sealing a secret failed"))?;
        let mut blob = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(SealedSecret {
            key_id: key_id.clone(),
            blob,
        })
    }

    /// Opens sealed bytes read from the row `binding`.
    pub fn open_bytes(&self, sealed: &SealedSecret, binding: Binding<'_>) -> Result<Zeroizing<Vec<u8>>, OpenFailure> {
        let key = self
            .key(&sealed.key_id)
            .ok_or_else(|| OpenFailure::UnknownKey(sealed.key_id.clone()))?;
        let (&version, rest) = sealed.blob.split_first().ok_or(OpenFailure::Malformed("empty"))?;
        if version != VERSION {
            return Err(OpenFailure::Malformed("unknown format version"));
        }
        if rest.len() < NONCE_BYTES {
            return Err(OpenFailure::Malformed("too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| OpenFailure::Malformed("too short"))?;
        let aad = binding.associated_data();
        cipher(key)
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenFailure::Tampered)
    }
}

/// Two keyrings are equal when they hold the same keys in the same roles.
impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.ids() == other.ids()
    }
}

fn cipher(key: &MasterKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key.bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SigningKind;

    fn binding() -> SecretBinding {
        SecretBinding {
            webhook: WebhookId::generate(),
            secret: SecretId::generate(),
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_in_its_own_row_under_its_own_key() {
        let old = MasterKey::generate().expect("key");
        let new = MasterKey::generate().expect("key");
        let ring = Keyring::new(new.clone(), vec![old.clone(), new.clone()]);
        assert_eq!(ring.ids().len(), 2, "duplicates dropped");
        let material = SecretMaterial::mint(SigningKind::Hmac).expect("minted");
        let here = binding();
        let sealed = ring.seal(old.id(), &material, here).expect("sealed");
        let shown = material.reveal_once().expect("hmac");
        assert!(
            !sealed.blob.windows(shown.len()).any(|w| w == shown.as_bytes()),
            "no plaintext in the blob"
        );
        let opened = ring.open(&sealed, here).expect("opens");
        assert_eq!(
            opened.reveal_once().as_deref().map(String::as_str),
            Some(shown.as_str())
        );

        // Another row: refused.
        let elsewhere = SecretBinding {
            webhook: WebhookId::generate(),
            ..here
        };
        assert!(matches!(ring.open(&sealed, elsewhere), Err(UnsealError::Tampered(_))));
        // A flipped bit: refused.
        let mut flipped = sealed.clone();
        let last = flipped.blob.len() - 1;
        flipped.blob[last] ^= 1;
        assert!(matches!(ring.open(&flipped, here), Err(UnsealError::Tampered(_))));
        // A node without the key: a clear error, never garbage.
        let other = Keyring::new(MasterKey::generate().expect("key"), vec![]);
        assert!(matches!(other.open(&sealed, here), Err(UnsealError::UnknownKey(id)) if &id == old.id()));
        // Same material, two seals: different nonces.
        let again = ring.seal(old.id(), &material, here).expect("sealed");
        assert_ne!(again.blob, sealed.blob);
    }

    #[test]
    fn a_webhook_secret_blob_and_a_signing_key_blob_never_open_as_each_other() {
        let key = MasterKey::generate().expect("key");
        let ring = Keyring::new(key.clone(), vec![]);
        let here = binding();
        let kid = format!("{}", here.secret);
        let as_key = ring
            .seal_bytes(key.id(), b"whsk_private", Binding::SigningKey { kid: &kid })
            .expect("sealed");
        assert_eq!(
            ring.open_bytes(&as_key, Binding::SigningKey { kid: &kid })
                .expect("opens")
                .as_slice(),
            b"whsk_private"
        );
        assert_eq!(
            ring.open_bytes(&as_key, Binding::SigningKey { kid: "another" }),
            Err(OpenFailure::Tampered),
            "another kid"
        );
        assert!(
            matches!(ring.open(&as_key, here), Err(UnsealError::Tampered(_))),
            "not a webhook secret"
        );
        let material = SecretMaterial::mint(SigningKind::Hmac).expect("minted");
        let as_secret = ring.seal(key.id(), &material, here).expect("sealed");
        assert_eq!(
            ring.open_bytes(&as_secret, Binding::SigningKey { kid: &kid }),
            Err(OpenFailure::Tampered),
            "not a signing key"
        );
    }
}
