//! RSA keys for RS256 JWTs (RSASSA-PKCS1-v1_5 with SHA-256).
//!
//! Private keys are read as PKCS#8 (PEM or DER) and generated at 2048 bits;
//! every key, private or public, must have a 2048- to 8192-bit modulus.

use std::fmt;

use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::sha2::Sha256;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::{KeyError, KeyKind};

/// Smallest accepted modulus, in bits.
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted modulus, in bits (bounds verification cost).
pub const RSA_MAX_BITS: usize = 8192;
/// Modulus size of generated keys, in bits.
pub const RSA_GENERATED_BITS: usize = 2048;

/// An RSA private key for RS256. Always valid and 2048 to 8192 bits; the
/// private components are wiped on drop (the `rsa` crate zeroizes them);
/// `Debug` shows only the public modulus size; the PKCS#8 form is only
/// reachable through [`RsaPrivateKey::expose_pkcs8_pem`].
#[derive(Clone)]
pub struct RsaPrivateKey {
    key: PrivateKey,
}

impl RsaPrivateKey {
    /// Generates a new 2048-bit key with exponent 65537 from the operating
    /// system RNG. Takes around a second in an optimised build.
    ///
    /// # Errors
    /// [`KeyError::Rng`] or another failure of key generation.
    pub fn generate() -> Result<Self, KeyError> {
        let key = PrivateKey::new(&mut getrandom::SysRng, RSA_GENERATED_BITS)
            .map_err(|error| invalid(KeyKind::RsaPrivate, error))?;
        Ok(Self { key })
    }

    /// Parses a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) private key.
    ///
    /// # Errors
    /// [`KeyError::InvalidRsa`] if it is not an unencrypted PKCS#8 RSA key,
    /// [`KeyError::RsaKeySize`] outside 2048..=8192 bits.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = PrivateKey::from_pkcs8_pem(pem).map_err(|error| invalid(KeyKind::RsaPrivate, error))?;
        Self::checked(key)
    }

    /// Parses a PKCS#8 DER private key.
    ///
    /// # Errors
    /// As [`RsaPrivateKey::from_pkcs8_pem`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let key = PrivateKey::from_pkcs8_der(der).map_err(|error| invalid(KeyKind::RsaPrivate, error))?;
        Self::checked(key)
    }

    fn checked(key: PrivateKey) -> Result<Self, KeyError> {
        check_size(KeyKind::RsaPrivate, &key)?;
        Ok(Self { key })
    }

    /// The key as PKCS#8 PEM, in a buffer wiped on drop.
    ///
    /// # Errors
    /// [`KeyError::InvalidRsa`] if encoding fails.
    pub fn expose_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|error| invalid(KeyKind::RsaPrivate, error))
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey {
            key: self.key.to_public_key(),
        }
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message` (blinded with the OS RNG).
    pub(crate) fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.key
            .pkcs1v15_sign::<Sha256>(message)
            .map_err(|error| error.to_string())
    }
}

impl fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPrivateKey(redacted, {} bits)", self.key.size() * 8)
    }
}

/// An RSA public key for RS256. Always 2048 to 8192 bits with an exponent
/// the `rsa` crate accepts (2 to 2^33 − 1).
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    key: PublicKey,
}

impl RsaPublicKey {
    /// Builds a key from the big-endian modulus and exponent (JWK `n`, `e`).
    ///
    /// # Errors
    /// [`KeyError::RsaKeySize`] or [`KeyError::InvalidRsa`].
    pub fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let kind = KeyKind::RsaPublic;
        let bits = significant_bits(modulus);
        if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
            return Err(KeyError::RsaKeySize {
                kind,
                bits,
                min: RSA_MIN_BITS,
                max: RSA_MAX_BITS,
            });
        }
        if exponent.len() > 8 {
            return Err(KeyError::InvalidRsa {
                kind,
                reason: "public exponent too large".to_owned(),
            });
        }
        let n = BoxedUint::from_be_slice_vartime(modulus);
        let e = BoxedUint::from_be_slice_vartime(exponent);
        let key = PublicKey::new(n, e).map_err(|error| invalid(kind, error))?;
        Ok(Self { key })
    }

    /// Big-endian modulus without leading zeros (JWK `n`).
    #[must_use]
    pub fn modulus(&self) -> Box<[u8]> {
        self.key.n_bytes()
    }

    /// Big-endian public exponent without leading zeros (JWK `e`).
    #[must_use]
    pub fn exponent(&self) -> Box<[u8]> {
        self.key.e_bytes()
    }

    /// Modulus size in bytes, which is also the signature length.
    #[must_use]
    pub fn size_bytes(&self) -> usize {
        self.key.size()
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature over `message`.
    pub(crate) fn verify_rs256(&self, message: &[u8], signature: &[u8]) -> bool {
        signature.len() == self.key.size() && self.key.pkcs1v15_verify::<Sha256>(message, signature).is_ok()
    }
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.key.size() * 8)
    }
}

fn check_size(kind: KeyKind, key: &PrivateKey) -> Result<(), KeyError> {
    let bits = significant_bits(&key.n_bytes());
    if (RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(KeyError::RsaKeySize {
            kind,
            bits,
            min: RSA_MIN_BITS,
            max: RSA_MAX_BITS,
        })
    }
}

/// Bit length of a big-endian unsigned integer.
fn significant_bits(big_endian: &[u8]) -> usize {
    let Some(first) = big_endian.iter().position(|&byte| byte != 0) else {
        return 0;
    };
    let leading = big_endian[first].leading_zeros() as usize;
    (big_endian.len() - first) * 8 - leading
}

fn invalid(kind: KeyKind, error: impl fmt::Display) -> KeyError {
    KeyError::InvalidRsa {
        kind,
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_bits_counts_from_the_first_set_bit() {
        assert_eq!(significant_bits(&[]), 0);
        assert_eq!(significant_bits(&[0, 0]), 0);
        assert_eq!(significant_bits(&[0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[0, 0x7f, 0]), 15);
    }

    #[test]
    fn small_or_broken_public_keys_are_refused() {
        let small = [0xffu8; 128];
        assert!(matches!(
            RsaPublicKey::from_components(&small, &[1, 0, 1]),
            Err(KeyError::RsaKeySize { bits: 1024, .. })
        ));
        // An even modulus is not an RSA modulus.
        let mut even = [0xffu8; 256];
        even[255] = 0xfe;
        assert!(matches!(
            RsaPublicKey::from_components(&even, &[1, 0, 1]),
            Err(KeyError::InvalidRsa { .. })
        ));
        assert!(
            RsaPrivateKey::from_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").is_err()
        );
    }
}
