//! Key types. Each is parsed strictly at the boundary, so a value of any of
//! these types is always a usable key; secrets are zeroized on drop and
//! never printed.

mod ed25519;
mod hmac;
mod rsa;

use std::fmt;

pub use self::ed25519::{ED25519_PUBLIC_PREFIX, ED25519_SECRET_PREFIX, Ed25519PublicKey, Ed25519SecretKey};
pub use self::hmac::{HMAC_GENERATED_BYTES, HMAC_MAX_BYTES, HMAC_MIN_BYTES, HMAC_SECRET_PREFIX, HmacKey};
pub use self::rsa::{RSA_GENERATED_BITS, RSA_MAX_BITS, RSA_MIN_BITS, RsaPrivateKey, RsaPublicKey};
use crate::error::KeyError;

/// A key a sender signs Standard Webhooks with: one `webhook-signature`
/// entry per key (`v1` for HMAC, `v1a` for Ed25519).
#[derive(Clone, Debug)]
pub enum SigningKey {
    /// `whsec_`, emits `v1,<base64 of 32 bytes>`.
    Hmac(HmacKey),
    /// `whsk_`, emits `v1a,<base64 of 64 bytes>`.
    Ed25519(Ed25519SecretKey),
}

impl SigningKey {
    /// Parses a `whsec_` or `whsk_` key by its prefix.
    ///
    /// # Errors
    /// [`KeyError::UnrecognizedKey`] for another prefix, otherwise the
    /// error of [`HmacKey::parse`] or [`Ed25519SecretKey::parse`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(HMAC_SECRET_PREFIX) {
            HmacKey::parse(text).map(Self::Hmac)
        } else if text.starts_with(ED25519_SECRET_PREFIX) {
            Ed25519SecretKey::parse(text).map(Self::Ed25519)
        } else {
            Err(KeyError::UnrecognizedKey {
                expected: "whsec_ or whsk_",
            })
        }
    }

    /// The key a receiver needs to verify this key's signatures: the same
    /// HMAC secret, or the Ed25519 public key.
    #[must_use]
    pub fn trusted_key(&self) -> TrustedKey {
        match self {
            Self::Hmac(key) => TrustedKey::Hmac(key.clone()),
            Self::Ed25519(key) => TrustedKey::Ed25519(key.public_key()),
        }
    }
}

impl From<HmacKey> for SigningKey {
    fn from(key: HmacKey) -> Self {
        Self::Hmac(key)
    }
}

impl From<Ed25519SecretKey> for SigningKey {
    fn from(key: Ed25519SecretKey) -> Self {
        Self::Ed25519(key)
    }
}

/// A key a receiver trusts: `v1` entries are checked against HMAC keys,
/// `v1a` entries against Ed25519 public keys.
#[derive(Clone, Debug)]
pub enum TrustedKey {
    /// A shared `whsec_` secret.
    Hmac(HmacKey),
    /// A `whpk_` public key.
    Ed25519(Ed25519PublicKey),
}

impl TrustedKey {
    /// Parses a `whsec_` or `whpk_` key by its prefix. A `whsk_` secret key
    /// is refused here on purpose: a receiver needs only the public key
    /// (use [`SigningKey::trusted_key`] to derive it deliberately).
    ///
    /// # Errors
    /// [`KeyError::UnrecognizedKey`] for another prefix, otherwise the
    /// error of [`HmacKey::parse`] or [`Ed25519PublicKey::parse`].
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.starts_with(HMAC_SECRET_PREFIX) {
            HmacKey::parse(text).map(Self::Hmac)
        } else if text.starts_with(ED25519_PUBLIC_PREFIX) {
            Ed25519PublicKey::parse(text).map(Self::Ed25519)
        } else {
            Err(KeyError::UnrecognizedKey {
                expected: "whsec_ or whpk_",
            })
        }
    }
}

impl From<HmacKey> for TrustedKey {
    fn from(key: HmacKey) -> Self {
        Self::Hmac(key)
    }
}

impl From<Ed25519PublicKey> for TrustedKey {
    fn from(key: Ed25519PublicKey) -> Self {
        Self::Ed25519(key)
    }
}

/// A public key as published in a JWKS and used for JWTs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// An OKP/Ed25519 key (JWT `alg` `EdDSA`).
    Ed25519(Ed25519PublicKey),
    /// An RSA key (JWT `alg` `RS256`).
    Rsa(RsaPublicKey),
}

impl PublicKey {
    /// The JWT `alg` this key verifies: `EdDSA` or `RS256`.
    #[must_use]
    pub fn jwt_algorithm(&self) -> &'static str {
        match self {
            Self::Ed25519(_) => "EdDSA",
            Self::Rsa(_) => "RS256",
        }
    }
}

impl From<Ed25519PublicKey> for PublicKey {
    fn from(key: Ed25519PublicKey) -> Self {
        Self::Ed25519(key)
    }
}

impl From<RsaPublicKey> for PublicKey {
    fn from(key: RsaPublicKey) -> Self {
        Self::Rsa(key)
    }
}

/// Longest accepted key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

/// A JWK `kid` / JWS `kid`: 1 to 128 bytes of visible ASCII (`!` to `~`),
/// so it is safe in JSON, headers and logs without escaping surprises.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Checks and wraps a key id.
    ///
    /// # Errors
    /// [`KeyError::InvalidKeyId`] if empty, longer than 128 bytes, or not visible ASCII.
    pub fn parse(kid: &str) -> Result<Self, KeyError> {
        if kid.is_empty() {
            return Err(KeyError::InvalidKeyId { reason: "empty" });
        }
        if kid.len() > MAX_KEY_ID_LEN {
            return Err(KeyError::InvalidKeyId {
                reason: "longer than 128 bytes",
            });
        }
        if !kid.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(KeyError::InvalidKeyId {
                reason: "not visible ASCII (no spaces or control characters)",
            });
        }
        Ok(Self(kid.to_owned()))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_the_key_type() {
        assert!(matches!(
            SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Ok(SigningKey::Hmac(_))
        ));
        assert!(matches!(
            SigningKey::parse("whsk_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU="),
            Ok(SigningKey::Ed25519(_))
        ));
        assert!(matches!(
            SigningKey::parse("whpk_x"),
            Err(KeyError::UnrecognizedKey { .. })
        ));
        assert!(matches!(
            TrustedKey::parse("whpk_wuzPrKxPfWpJSsXgyg/MEoMGvjs5SjDO4ad6X4ZYqqg="),
            Ok(TrustedKey::Ed25519(_))
        ));
        assert!(matches!(
            TrustedKey::parse("whsk_x"),
            Err(KeyError::UnrecognizedKey { .. })
        ));
    }

    #[test]
    fn key_ids_are_visible_ascii() {
        assert!(KeyId::parse("herald-2026-01").is_ok());
        for bad in ["", "a b", "ключ", "tab\t"] {
            assert!(KeyId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(KeyId::parse(&"k".repeat(129)).is_err());
    }
}
