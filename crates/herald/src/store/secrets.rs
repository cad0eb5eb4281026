//! Signing secrets at rest: the store trait for rotation and expiry, and
//! the start-up rule every backend applies to its master keys.
//!
//! Every backend keeps secrets sealed (`domain::secret::Keyring`): a row
//! holds the id of the master key that sealed it and the sealed bytes,
//! never the secret. New secrets are sealed under the *key in force*, whose
//! id the database records (`settings.master_key_id`), so that every node
//! seals under the same key however its own keyring is ordered, and only
//! `herald master-key rotate` changes it.

use async_trait::async_trait;

use super::{Progress, StoreError, StoreResult};
use crate::domain::secret::{Keyring, MasterKeyId, SecretMaterial, UnsealError};
use crate::domain::webhook::Webhook;
use crate::domain::{ProjectId, SecretId, Timestamp, WebhookId};

/// A signing secret about to be stored (sealed by the store).
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: SecretId,
    pub material: SecretMaterial,
}

impl NewSecret {
    /// A fresh secret of `kind` with a fresh id.
    pub fn mint(kind: crate::domain::SigningKind) -> Result<Self, crate::domain::Invalid> {
        Ok(Self {
            id: SecretId::generate(),
            material: SecretMaterial::mint(kind)?,
        })
    }
}

/// A signing secret as the dispatcher gets it: opened, or why it does not
/// open (the attempt then fails as `signing`, logged and retried; it never
/// signs with anything else).
#[derive(Debug, Clone)]
pub struct StoredSecret {
    pub id: SecretId,
    /// The row's kind. A per-job webhook's row (`SigningKind::Job`) holds
    /// no material: it is signed with Herald's own keys (`server_keys`),
    /// and its `material` is `Err(UnsealError::NoMaterial)`.
    pub kind: crate::domain::SigningKind,
    pub material: Result<SecretMaterial, UnsealError>,
}

#[derive(Debug, Clone)]
pub struct RotateSigningSecret {
    pub project_id: ProjectId,
    pub webhook_id: WebhookId,
    /// Becomes the webhook's current secret; of the webhook's signing kind.
    pub secret: NewSecret,
    /// When the secrets signing now stop signing (`now` revokes them at
    /// once); a secret already due to stop earlier keeps its time.
    pub previous_expire_time: Timestamp,
    pub now: Timestamp,
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    /// In one transaction: the secrets signing at `now` get
    /// `previous_expire_time` (or keep an earlier one), those no longer
    /// signing are deleted, and `secret` is added, sealed under the key in
    /// force. `None` if the webhook does not exist (in this project).
    async fn rotate_signing_secret(&self, request: RotateSigningSecret) -> StoreResult<Option<Webhook>>;
    /// Deletes a bounded number of secrets that stopped signing at or
    /// before `now`.
    async fn purge_expired_secrets(&self, now: Timestamp) -> StoreResult<Progress>;
}

/// What `herald master-key rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRotation {
    /// The key in force before.
    pub from: Option<MasterKeyId>,
    /// The key in force now: the keyring's primary.
    pub to: MasterKeyId,
    /// Rows sealed anew: webhook secrets and Herald's own signing keys.
    pub resealed: u64,
}

/// The start-up check, the same on every backend: every master key the
/// database uses (the key in force, and each row's) must be in `keyring`,
/// so a wrong or missing key stops the node at start with one line instead
/// of failing every signature later. Returns the key in force (the
/// keyring's primary on a database that has none yet).
pub fn check_master_keys(
    keyring: &Keyring,
    in_force: Option<&MasterKeyId>,
    in_use: &[MasterKeyId],
) -> StoreResult<MasterKeyId> {
    let held = keyring.ids();
    let held_text = held.iter().map(MasterKeyId::as_str).collect::<Vec<_>>().join(", ");
    for id in in_force.into_iter().chain(in_use) {
        if !keyring.holds(id) {
            return Err(StoreError::MasterKey(format!(
                "wrong or missing master key: the database's signing secrets are sealed under master key {id}, \
                 but this node holds only {held_text} (set HERALD_MASTER_KEY to the key in force, \
                 or list it in HERALD_PREVIOUS_MASTER_KEYS during a master-key rotation)"
            )));
        }
    }
    Ok(in_force.cloned().unwrap_or_else(|| keyring.primary().id().clone()))
}

/// The name under which the key in force is recorded in `settings`.
pub(crate) const MASTER_KEY_SETTING: &str = "master_key_id";

/// Rows sealed anew per transaction by a master-key rotation.
pub(crate) const RESEAL_CHUNK: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::secret::MasterKey;

    #[test]
    fn every_key_in_use_must_be_held() {
        let old = MasterKey::generate().expect("key");
        let new = MasterKey::generate().expect("key");
        let ring = Keyring::new(new.clone(), vec![old.clone()]);
        assert_eq!(check_master_keys(&ring, None, &[]).expect("fresh"), new.id().clone());
        assert_eq!(
            check_master_keys(&ring, Some(old.id()), &[old.id().clone(), new.id().clone()]).expect("held"),
            old.id().clone()
        );
        let alone = Keyring::new(new.clone(), vec![]);
        let error = check_master_keys(&alone, Some(new.id()), &[old.id().clone()]).expect_err("missing");
        let message = error.to_string();
        assert!(
            message.contains(old.id().as_str()) && !message.contains('\n'),
            "{message}"
        );
    }
}
