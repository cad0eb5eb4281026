//! The one seam through which Herald's own private signing keys reach the
//! database and come back, the same for every backend: [`seal`] before
//! writing, [`open`] after reading. A key is sealed with the deployment's
//! `Keyring` (XChaCha20-Poly1305, as webhook secrets are), bound to its
//! kid under the signing-key label, so a blob moved to another row, or
//! from `webhook_secrets`, does not open. The row records the master key
//! that sealed it (`signing_keys.key_id`).
//!
//! Rows written before sealing hold `plain:<key>` in `private_key` and no
//! `key_id`; [`open_plain`] reads them once, when the store seals them at
//! start.

use zeroize::Zeroizing;

use super::{StoreError, StoreResult};
use crate::domain::secret::{Binding, Keyring, MasterKeyId, OpenFailure, SealedSecret};

const PLAIN: &str = "plain:";

/// Seals `private_key` (of the key `kid`) under the held master key `key_id`.
pub(crate) fn seal(keyring: &Keyring, key_id: &MasterKeyId, kid: &str, private_key: &str) -> StoreResult<SealedSecret> {
    keyring
        .seal_bytes(key_id, private_key.as_bytes(), Binding::SigningKey { kid })
        .map_err(|e| StoreError::MasterKey(e.message))
}

/// The private key of `kid` from its sealed row.
pub(crate) fn open(keyring: &Keyring, kid: &str, sealed: &SealedSecret) -> StoreResult<Zeroizing<String>> {
    let bytes = keyring
        .open_bytes(sealed, Binding::SigningKey { kid })
        .map_err(|failure| match failure {
            OpenFailure::UnknownKey(id) => StoreError::MasterKey(format!(
                "the signing key {kid} is sealed under master key {id}, which this node does not hold \
                 (set HERALD_MASTER_KEY, or list it in HERALD_PREVIOUS_MASTER_KEYS)"
            )),
            OpenFailure::Tampered => StoreError::Corrupt(format!(
                "the sealed signing key {kid} does not open: it was altered or moved from another row"
            )),
            OpenFailure::Malformed(problem) => {
                StoreError::Corrupt(format!("the sealed signing key {kid} is malformed: {problem}"))
            }
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| StoreError::Corrupt(format!("the sealed signing key {kid} is not text")))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// The private key from a row written before sealing (`plain:<key>`).
pub(crate) fn open_plain(kid: &str, stored: &str) -> StoreResult<Zeroizing<String>> {
    stored
        .strip_prefix(PLAIN)
        .map(|key| Zeroizing::new(key.to_owned()))
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the signing key {kid} is stored in a form this Herald cannot open"
            ))
        })
}

/// A row as read: its master key id and blob. A row still unsealed after
/// start is refused, never used as is.
pub(crate) fn open_row(
    keyring: &Keyring,
    kid: &str,
    key_id: Option<MasterKeyId>,
    blob: Option<Vec<u8>>,
) -> StoreResult<Zeroizing<String>> {
    match (key_id, blob) {
        (Some(key_id), Some(blob)) => open(keyring, kid, &SealedSecret { key_id, blob }),
        _ => Err(StoreError::Corrupt(format!("the signing key {kid} is not sealed"))),
    }
}
