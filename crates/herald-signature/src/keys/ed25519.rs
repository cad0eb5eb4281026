//! `whsk_` / `whpk_` Ed25519 keys (Standard Webhooks `v1a`).
//!
//! Emitted forms are the raw ones: a 32-byte seed and a 32-byte public key.
//! Accepted as well: a 64-byte secret (seed ‖ public key, checked for
//! consistency) and a 44-byte `SubjectPublicKeyInfo` DER public key.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::ed25519::signature::{MultipartSigner, MultipartVerifier};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::encoding;
use crate::error::{KeyError, KeyKind};

/// Prefix of the text form of an Ed25519 secret key.
pub const ED25519_SECRET_PREFIX: &str = "whsk_";
/// Prefix of the text form of an Ed25519 public key.
pub const ED25519_PUBLIC_PREFIX: &str = "whpk_";

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): SEQUENCE,
/// AlgorithmIdentifier { 1.3.101.112 }, BIT STRING of 33 bytes (0 unused bits).
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Longest base64 text worth decoding for either key (64 bytes → 88 chars).
const MAX_ENCODED_LEN: usize = 88;

/// An Ed25519 signing key. Always valid; its seed is wiped on drop (the
/// dalek key zeroizes itself), `Debug` shows only the public key, there is
/// no `Display`; [`Ed25519SecretKey::expose_secret`] is the one way out.
#[derive(Clone)]
pub struct Ed25519SecretKey {
    key: SigningKey,
}

impl Ed25519SecretKey {
    /// Draws a new seed from the operating system RNG.
    ///
    /// # Panics
    /// If the operating system RNG fails; see [`Ed25519SecretKey::try_generate`].
    #[must_use]
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(error) => panic!("{error}"),
        }
    }

    /// Draws a new seed from the operating system RNG.
    ///
    /// # Errors
    /// [`KeyError::Rng`] if the operating system RNG fails.
    pub fn try_generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|_| KeyError::Rng)?;
        Ok(Self::from_seed(&seed))
    }

    /// Builds the key from its 32-byte seed.
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Parses `whsk_` + canonical padded standard base64 of a 32-byte seed,
    /// or of 64 bytes (seed ‖ public key) whose public half must be the one
    /// derived from the seed.
    ///
    /// # Errors
    /// A wrong prefix, non-canonical base64, another length, or a
    /// 64-byte key whose halves disagree ([`KeyError::MismatchedKeypair`]).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let kind = KeyKind::Ed25519Secret;
        let bytes = Zeroizing::new(decode_prefixed(text, ED25519_SECRET_PREFIX, kind)?);
        match bytes.len() {
            32 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                seed.copy_from_slice(&bytes);
                Ok(Self::from_seed(&seed))
            }
            64 => {
                let mut pair = Zeroizing::new([0u8; 64]);
                pair.copy_from_slice(&bytes);
                let key = SigningKey::from_keypair_bytes(&pair).map_err(|_| KeyError::MismatchedKeypair)?;
                Ok(Self { key })
            }
            len => Err(KeyError::WrongLength {
                kind,
                len,
                expected: "32 (seed) or 64 (seed and public key)",
            }),
        }
    }

    /// The seed in its text form, `whsk_<base64 of 32 bytes>`, in a buffer
    /// wiped on drop.
    #[must_use]
    pub fn expose_secret(&self) -> Zeroizing<String> {
        // Exact capacity: a reallocation would leave an unwiped copy behind.
        let capacity = ED25519_SECRET_PREFIX.len() + encoding::standard_encoded_len(32);
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        text.push_str(ED25519_SECRET_PREFIX);
        encoding::encode_standard_into(self.key.as_bytes(), &mut text);
        text
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> Ed25519PublicKey {
        Ed25519PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Pure Ed25519 over `parts` in order, without concatenating them.
    pub(crate) fn sign_parts(&self, parts: &[&[u8]]) -> Result<[u8; 64], String> {
        self.key
            .try_multipart_sign(parts)
            .map(|signature| signature.to_bytes())
            .map_err(|error| error.to_string())
    }
}

impl fmt::Debug for Ed25519SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519SecretKey(whsk_…redacted, public {})", self.public_key())
    }
}

/// An Ed25519 public key. Always a valid, non-weak curve point: small-order
/// points are refused because signatures under them prove nothing.
/// `Display` (and so `to_string()`) gives `whpk_<base64 of 32 bytes>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519PublicKey {
    key: VerifyingKey,
}

impl Ed25519PublicKey {
    /// Parses `whpk_` + canonical padded standard base64 of a raw 32-byte
    /// key or of a 44-byte `SubjectPublicKeyInfo` DER
    /// (`302a300506032b6570032100` + 32 bytes).
    ///
    /// # Errors
    /// A wrong prefix, non-canonical base64, another length, a 44-byte
    /// value that is not an Ed25519 SPKI, or an invalid or weak point.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let kind = KeyKind::Ed25519Public;
        let bytes = decode_prefixed(text, ED25519_PUBLIC_PREFIX, kind)?;
        let raw = match bytes.len() {
            32 => bytes.as_slice(),
            44 => bytes
                .strip_prefix(SPKI_PREFIX.as_slice())
                .ok_or(KeyError::NotEd25519Spki)?,
            len => {
                return Err(KeyError::WrongLength {
                    kind,
                    len,
                    expected: "32 (raw) or 44 (SubjectPublicKeyInfo DER)",
                });
            }
        };
        let mut array = [0u8; 32];
        array.copy_from_slice(raw);
        Self::from_bytes(&array)
    }

    /// Builds the key from its raw 32 bytes.
    ///
    /// # Errors
    /// [`KeyError::InvalidPoint`] or [`KeyError::WeakPublicKey`].
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(Self { key })
    }

    /// The raw 32 bytes (RFC 8032 encoding).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Verifies a pure Ed25519 signature over `parts` in order. Signatures
    /// with a non-canonical `S` or `R` are refused by the underlying check.
    pub(crate) fn verify_parts(&self, parts: &[&[u8]], signature: &[u8; 64]) -> bool {
        self.key
            .multipart_verify(parts, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Display for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(ED25519_PUBLIC_PREFIX)?;
        f.write_str(&encoding::encode_standard(self.key.as_bytes()))
    }
}

impl fmt::Debug for Ed25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519PublicKey({self})")
    }
}

impl FromStr for Ed25519PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::parse(text)
    }
}

/// Strips `prefix` and strictly decodes the rest, refusing absurdly long
/// input before decoding it.
fn decode_prefixed(text: &str, prefix: &'static str, kind: KeyKind) -> Result<Vec<u8>, KeyError> {
    let Some(encoded) = text.strip_prefix(prefix) else {
        return Err(KeyError::WrongPrefix { kind, expected: prefix });
    };
    if encoded.len() > MAX_ENCODED_LEN {
        return Err(KeyError::WrongLength {
            kind,
            len: encoded.len() / 4 * 3,
            expected: "at most 64 bytes",
        });
    }
    encoding::decode_standard(encoded).map_err(|problem| KeyError::InvalidBase64 { kind, problem })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "whsk_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=";
    const PUBLIC: &str = "whpk_wuzPrKxPfWpJSsXgyg/MEoMGvjs5SjDO4ad6X4ZYqqg=";
    const SPKI: &str = "whpk_MCowBQYDK2VwAyEAkp3dScDPIzT1CwUFUMdzyPbWOAQaCF9z4ucuKuZD7Io=";
    const SPKI_RAW: &str = "whpk_kp3dScDPIzT1CwUFUMdzyPbWOAQaCF9z4ucuKuZD7Io=";

    #[test]
    fn secret_key_derives_the_published_public_key() {
        let secret = Ed25519SecretKey::parse(SEED).map(|k| k.public_key().to_string());
        assert_eq!(secret.as_deref(), Ok(PUBLIC));
    }

    #[test]
    fn sixty_four_byte_secret_keys_are_checked_for_consistency() {
        let Ok(secret) = Ed25519SecretKey::parse(SEED) else {
            panic!("vector seed parses")
        };
        let mut pair = secret.key.to_keypair_bytes().to_vec();
        let good = format!("whsk_{}", encoding::encode_standard(&pair));
        let reparsed = Ed25519SecretKey::parse(&good).map(|k| k.expose_secret().to_string());
        assert_eq!(
            reparsed.as_deref(),
            Ok(SEED),
            "64-byte form re-exports as the 32-byte seed"
        );
        pair[40] ^= 1;
        let bad = format!("whsk_{}", encoding::encode_standard(&pair));
        assert!(matches!(
            Ed25519SecretKey::parse(&bad),
            Err(KeyError::MismatchedKeypair)
        ));
    }

    #[test]
    fn public_keys_accept_raw_and_spki_forms() {
        let spki = Ed25519PublicKey::parse(SPKI).map(|k| k.to_string());
        assert_eq!(spki.as_deref(), Ok(SPKI_RAW), "SPKI is re-exported in the raw form");
        let mut wrong_spki = encoding::decode_standard(&SPKI[5..]).unwrap_or_default();
        wrong_spki[8] = 0x71; // Ed448's OID
        let text = format!("whpk_{}", encoding::encode_standard(&wrong_spki));
        assert_eq!(Ed25519PublicKey::parse(&text), Err(KeyError::NotEd25519Spki));
    }

    #[test]
    fn refuses_weak_points_wrong_lengths_and_prefixes() {
        let identity = format!(
            "whpk_{}",
            encoding::encode_standard(&{
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            })
        );
        assert_eq!(Ed25519PublicKey::parse(&identity), Err(KeyError::WeakPublicKey));
        let short = format!("whpk_{}", encoding::encode_standard(&[1u8; 31]));
        assert!(matches!(
            Ed25519PublicKey::parse(&short),
            Err(KeyError::WrongLength { len: 31, .. })
        ));
        assert!(matches!(
            Ed25519PublicKey::parse(SEED),
            Err(KeyError::WrongPrefix { .. })
        ));
        assert!(matches!(
            Ed25519SecretKey::parse(PUBLIC),
            Err(KeyError::WrongPrefix { .. })
        ));
        assert!(matches!(
            Ed25519SecretKey::parse("whsk_!!!!"),
            Err(KeyError::InvalidBase64 { .. })
        ));
    }

    #[test]
    fn debug_never_shows_the_seed() {
        let Ok(secret) = Ed25519SecretKey::parse(SEED) else {
            panic!("vector seed parses")
        };
        let debug = format!("{secret:?}");
        assert!(debug.starts_with("Ed25519SecretKey(whsk_…redacted, public whpk_"));
        assert!(!debug.contains(&SEED[5..20]));
    }
}
