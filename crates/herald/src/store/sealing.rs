//! The one seam through which Herald's own private signing keys reach the
//! database and come back: [`seal`] before writing, [`open`] after
//! reading. Today it stores the key as is, marked `plain:`; encryption
//! under the deployment's master key (the webhook-secret encryption that
//! is being added beside this) plugs in here, and the marker lets both
//! forms be read during the switch.

use zeroize::Zeroizing;

use super::{StoreError, StoreResult};

const PLAIN: &str = "plain:";

/// The stored form of a private key.
pub(crate) fn seal(private_key: &str) -> String {
    format!("{PLAIN}{private_key}")
}

/// The private key from its stored form.
pub(crate) fn open(stored: &str) -> StoreResult<Zeroizing<String>> {
    stored
        .strip_prefix(PLAIN)
        .map(|key| Zeroizing::new(key.to_owned()))
        .ok_or_else(|| StoreError::Corrupt("a signing key is sealed in a form this Herald cannot open".into()))
}
