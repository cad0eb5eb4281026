//! `whsec_` HMAC-SHA256 secrets (Standard Webhooks `v1`).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::encoding;
use crate::error::{KeyError, KeyKind};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of the text form of an HMAC secret.
pub const HMAC_SECRET_PREFIX: &str = "whsec_";

/// Fewest secret bytes [`HmacKey::parse`] accepts (Standard Webhooks).
pub const HMAC_MIN_BYTES: usize = 24;
/// Most secret bytes [`HmacKey::parse`] accepts (Standard Webhooks).
pub const HMAC_MAX_BYTES: usize = 64;
/// Secret bytes [`HmacKey::generate`] draws.
pub const HMAC_GENERATED_BYTES: usize = 32;

/// An HMAC-SHA256 signing secret. Always valid: it can only be built by
/// [`HmacKey::generate`], by the strict [`HmacKey::parse`], or by the
/// explicitly named [`HmacKey::from_raw_bytes`].
///
/// Invariants: the secret bytes are never empty; they and the pre-keyed
/// HMAC state are wiped from memory on drop; `Debug` redacts them and there
/// is no `Display` — the text form is only reachable through
/// [`HmacKey::expose_secret`].
#[derive(Clone)]
pub struct HmacKey {
    /// The raw secret, kept to re-export it as `whsec_…`.
    secret: Zeroizing<Box<[u8]>>,
    /// HMAC state after absorbing the key (inner and outer pads): cloning it
    /// saves two SHA-256 blocks per signature. Zeroized on drop because
    /// sha2's `zeroize` feature is enabled.
    keyed: HmacSha256,
}

impl HmacKey {
    /// Draws a new 32-byte secret from the operating system RNG.
    ///
    /// # Panics
    /// If the operating system RNG fails; see [`HmacKey::try_generate`].
    #[must_use]
    pub fn generate() -> Self {
        match Self::try_generate() {
            Ok(key) => key,
            Err(error) => panic!("{error}"),
        }
    }

    /// Draws a new 32-byte secret from the operating system RNG.
    ///
    /// # Errors
    /// [`KeyError::Rng`] if the operating system RNG fails.
    pub fn try_generate() -> Result<Self, KeyError> {
        let mut secret = Zeroizing::new([0u8; HMAC_GENERATED_BYTES]);
        getrandom::fill(secret.as_mut_slice()).map_err(|_| KeyError::Rng)?;
        Self::from_checked_bytes(secret.as_slice())
    }

    /// Parses `whsec_` followed by canonical padded standard base64 of 24 to
    /// 64 bytes.
    ///
    /// # Errors
    /// A wrong prefix, non-canonical base64 (bad characters, missing or
    /// wrong padding, non-zero trailing bits), or a decoded length outside
    /// 24..=64, each as its own [`KeyError`] variant.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let kind = KeyKind::HmacSecret;
        let Some(encoded) = text.strip_prefix(HMAC_SECRET_PREFIX) else {
            return Err(KeyError::WrongPrefix {
                kind,
                expected: HMAC_SECRET_PREFIX,
            });
        };
        // Refuse absurd input before decoding it (base64 is 4 chars per 3 bytes).
        if encoded.len() > 4 * HMAC_MAX_BYTES {
            return Err(KeyError::TooLong {
                kind,
                len: encoded.len() / 4 * 3,
                max: HMAC_MAX_BYTES,
            });
        }
        let secret = Zeroizing::new(
            encoding::decode_standard(encoded).map_err(|problem| KeyError::InvalidBase64 { kind, problem })?,
        );
        if secret.len() < HMAC_MIN_BYTES {
            return Err(KeyError::TooShort {
                kind,
                len: secret.len(),
                min: HMAC_MIN_BYTES,
            });
        }
        if secret.len() > HMAC_MAX_BYTES {
            return Err(KeyError::TooLong {
                kind,
                len: secret.len(),
                max: HMAC_MAX_BYTES,
            });
        }
        Self::from_checked_bytes(&secret)
    }

    /// Builds a key from raw secret bytes of any non-zero length, for
    /// interoperating with senders whose secrets are outside the 24..=64
    /// bytes of Standard Webhooks (for example a 16-byte secret). Prefer
    /// [`HmacKey::parse`]: short secrets are weak.
    ///
    /// # Errors
    /// [`KeyError::TooShort`] for an empty secret: HMAC with an empty key is
    /// forgeable by anyone.
    pub fn from_raw_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::TooShort {
                kind: KeyKind::HmacSecret,
                len: 0,
                min: 1,
            });
        }
        Self::from_checked_bytes(secret)
    }

    fn from_checked_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        // HMAC accepts keys of any length, so this error is not expected;
        // it is reported rather than unwrapped.
        let keyed = HmacSha256::new_from_slice(secret).map_err(|_| KeyError::WrongLength {
            kind: KeyKind::HmacSecret,
            len: secret.len(),
            expected: "a length HMAC-SHA256 accepts",
        })?;
        Ok(Self {
            secret: Zeroizing::new(secret.into()),
            keyed,
        })
    }

    /// The secret in its text form, `whsec_<base64>`, in a buffer that is
    /// wiped when dropped. The name is deliberate: every call site is a
    /// place where the secret leaves the type.
    #[must_use]
    pub fn expose_secret(&self) -> Zeroizing<String> {
        // Exact capacity: a reallocation would leave an unwiped copy behind.
        let capacity = HMAC_SECRET_PREFIX.len() + encoding::standard_encoded_len(self.secret.len());
        let mut text = Zeroizing::new(String::with_capacity(capacity));
        text.push_str(HMAC_SECRET_PREFIX);
        encoding::encode_standard_into(&self.secret, &mut text);
        text
    }

    /// Number of secret bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.secret.len()
    }

    /// Always `false`: an `HmacKey` never holds an empty secret.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.secret.is_empty()
    }

    /// HMAC-SHA256 over `parts` in order (hashed incrementally, never
    /// concatenated).
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacKey(whsec_…redacted, {} bytes)", self.secret.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Base64Problem;

    fn check(text: &str, expected: Result<usize, KeyError>) {
        let parsed = HmacKey::parse(text).map(|key| key.len());
        assert_eq!(parsed, expected, "parsing {text:?}");
    }

    #[test]
    fn parse_is_strict() {
        let kind = KeyKind::HmacSecret;
        check("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Ok(24));
        check("whsec_b6Ovv5eS7H5seJrGSStBYDivs8v2/KrFjfMaVZYsi7w=", Ok(32));
        check(
            "whsec_!!!!",
            Err(KeyError::InvalidBase64 {
                kind,
                problem: Base64Problem::InvalidCharacter { offset: 0 },
            }),
        );
        check("whsec_", Err(KeyError::TooShort { kind, len: 0, min: 24 }));
        check(
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Err(KeyError::WrongPrefix {
                kind,
                expected: "whsec_",
            }),
        );
        check(
            "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            Err(KeyError::WrongPrefix {
                kind,
                expected: "whsec_",
            }),
        );
        // Unpadded 32-byte secret.
        check(
            "whsec_b6Ovv5eS7H5seJrGSStBYDivs8v2/KrFjfMaVZYsi7w",
            Err(KeyError::InvalidBase64 {
                kind,
                problem: Base64Problem::InvalidPadding,
            }),
        );
        // Non-zero trailing bits: `x` instead of `w` before the padding.
        check(
            "whsec_b6Ovv5eS7H5seJrGSStBYDivs8v2/KrFjfMaVZYsi7x=",
            Err(KeyError::InvalidBase64 {
                kind,
                problem: Base64Problem::NonCanonical,
            }),
        );
        check(
            "whsec_bXlzZWNyZXRrZXkxMjM0NQ==",
            Err(KeyError::TooShort { kind, len: 16, min: 24 }),
        );
        let sixty_five = crate::encoding::encode_standard(&[1u8; 65]);
        check(
            &format!("whsec_{sixty_five}"),
            Err(KeyError::TooLong { kind, len: 65, max: 64 }),
        );
        let sixty_four = crate::encoding::encode_standard(&[1u8; 64]);
        check(&format!("whsec_{sixty_four}"), Ok(64));
        let huge = "A".repeat(100_000);
        assert!(matches!(
            HmacKey::parse(&format!("whsec_{huge}")),
            Err(KeyError::TooLong { .. })
        ));
    }

    #[test]
    fn generated_keys_round_trip_and_are_redacted() {
        let key = HmacKey::generate();
        assert_eq!(key.len(), 32);
        let text = key.expose_secret();
        assert_eq!(text.len(), "whsec_".len() + 44);
        let reparsed = HmacKey::parse(&text).map(|k| k.expose_secret());
        assert_eq!(reparsed.as_deref().map(String::as_str), Ok(text.as_str()));
        let debug = format!("{key:?}");
        assert_eq!(debug, "HmacKey(whsec_…redacted, 32 bytes)");
        assert!(!debug.contains(&text[6..16]));
    }

    #[test]
    fn raw_bytes_refuse_only_the_empty_key() {
        assert_eq!(
            HmacKey::from_raw_bytes(&[]).map(|k| k.len()),
            Err(KeyError::TooShort {
                kind: KeyKind::HmacSecret,
                len: 0,
                min: 1
            })
        );
        assert_eq!(HmacKey::from_raw_bytes(b"short").map(|k| k.len()), Ok(5));
    }
}
