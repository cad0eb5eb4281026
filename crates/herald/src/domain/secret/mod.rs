//! Signing-secret material: the one place that touches a secret's bytes.
//!
//! - [`SecretMaterial`] mints HMAC (`whsec_`) and Ed25519 (`whsk_`) secrets,
//!   makes what the API may show of them (a truncated HMAC secret, an
//!   Ed25519 public key) and hands the signer its key.
//! - [`Keyring`] seals a secret for the database with XChaCha20-Poly1305
//!   under a [`MasterKey`], bound to its row ([`SecretBinding`]: webhook id and
//!   secret id are the AEAD's associated data, so a sealed secret moved to
//!   another row does not open), and opens it again.
//! - [`RevocationBehavior`] is the rotation rule: when the secrets a
//!   rotation replaces stop signing.
//!
//! Key hierarchy: a master key (256 bits, from `HERALD_MASTER_KEY` or
//! `<data-dir>/master.key`) seals every webhook's signing secrets; the
//! database stores only sealed secrets and the id of the key that sealed
//! each (a hash of the key, which is how a wrong key is recognised at start).

mod keyring;
mod master_key;
mod material;
mod rotation;

pub use keyring::{Binding, Keyring, OpenFailure, SealedSecret, SecretBinding, UnsealError};
pub use master_key::{MasterKey, MasterKeyId};
pub use material::SecretMaterial;
pub use rotation::{REVOCATION_OVERLAP, RevocationBehavior};
