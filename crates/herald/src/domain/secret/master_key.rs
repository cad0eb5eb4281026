//! The master key that seals signing secrets, and its public id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::domain::Invalid;

/// Bytes in a master key (XChaCha20-Poly1305 takes a 256-bit key).
pub const MASTER_KEY_BYTES: usize = 32;

/// A 256-bit key-encryption key. Its text form is standard padded base64
/// of the 32 bytes (`openssl rand -base64 32` makes one). No `Display`;
/// `Debug` shows only the id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_BYTES]>,
    id: MasterKeyId,
}

/// Names a master key without revealing it: `mk_` and the first 8 bytes of
/// SHA-256 over a domain-separation label and the key, in hex. Stored on
/// each sealed row, it is the key check value: a node given another key
/// sees another id and refuses to start instead of signing with garbage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MasterKeyId(String);

impl MasterKey {
    /// A fresh key from the operating system's RNG.
    pub fn generate() -> Result<Self, Invalid> {
        let mut bytes = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| Invalid::new(format!("the operating system's random source failed: {e}")))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Parses the text form strictly: canonical base64 of exactly 32 bytes
    /// (surrounding whitespace, such as a file's newline, is ignored).
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| {
            Invalid::new("a master key is standard base64 of 32 random bytes (e.g. `herald master-key generate`)")
        })?);
        let bytes: [u8; MASTER_KEY_BYTES] = decoded.as_slice().try_into().map_err(|_| {
            Invalid::new(format!(
                "a master key is 32 bytes; this one decodes to {} (e.g. `herald master-key generate`)",
                decoded.len()
            ))
        })?;
        Ok(Self::from_bytes(Zeroizing::new(bytes)))
    }

    fn from_bytes(bytes: Zeroizing<[u8; MASTER_KEY_BYTES]>) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"herald/master-key-id/v1\0");
        hasher.update(bytes.as_ref());
        let digest = hasher.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            bytes,
            id: MasterKeyId(format!("mk_{hex}")),
        }
    }

    /// The text form, in a buffer wiped on drop (for writing `master.key`).
    pub fn expose_secret(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.bytes.as_ref()))
    }

    pub fn id(&self) -> &MasterKeyId {
        &self.id
    }

    pub(super) fn bytes(&self) -> &[u8; MASTER_KEY_BYTES] {
        &self.bytes
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKeyId {
    /// An id read back from the database.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("mk_")?;
        (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_strictly_and_have_stable_ids() {
        let key = MasterKey::generate().expect("a key");
        let text = key.expose_secret();
        let again = MasterKey::parse(&format!("{}\n", text.as_str())).expect("round trip");
        assert_eq!(key.id(), again.id());
        assert_eq!(MasterKeyId::parse(key.id().as_str()).as_ref(), Some(key.id()));
        assert_ne!(key.id(), MasterKey::generate().expect("a key").id());
        assert!(MasterKey::parse("").is_err());
        assert!(MasterKey::parse("not base64!").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 16])).is_err(), "16 bytes");
        assert!(!format!("{key:?}").contains(text.as_str()));
        assert_eq!(MasterKeyId::parse("mk_XYZ"), None);
    }
}
