//! Herald's own private signing keys at rest: sealed under the master key
//! in force, opened to the same keys after a restart, refused to a node
//! without that key, and sealed anew by a master-key rotation. (A blob
//! moved to another row, and `plain:` rows from before sealing, need raw
//! SQL: `tests/server/secrets.rs`, on both backends.)

use herald::domain::SigningKind;
use herald::domain::Timestamp;
use herald::domain::secret::{Keyring, MasterKey};
use herald::store::{KeyAlgorithm, StoreError, StoredSigningKey};

use crate::support::*;

fn key(algorithm: KeyAlgorithm, kid: &str, now: Timestamp) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.to_owned(),
        algorithm,
        private_key: zeroize::Zeroizing::new(format!("private-{kid}-{:016x}", rand::random::<u64>())),
        create_time: now,
        retire_time: None,
    }
}

async fn opened(h: &Harness) -> Vec<(String, String)> {
    h.store()
        .signing_keys(h.now())
        .await
        .expect("the keys open")
        .into_iter()
        .map(|key| (key.kid, key.private_key.to_string()))
        .collect()
}

contract_test!(
    fn sealed_keys_open_to_the_same_private_keys_and_only_with_the_master_key(h) {
        let now = h.now();
        let ed = key(KeyAlgorithm::EdDsa, "ed-1", now);
        let rs = key(KeyAlgorithm::Rs256, "rs-1", now);
        let expected = vec![
            ("ed-1".to_owned(), ed.private_key.to_string()),
            ("rs-1".to_owned(), rs.private_key.to_string()),
        ];
        h.store().init_signing_keys(vec![ed, rs]).await.unwrap();
        assert_eq!(opened(&h).await, expected, "round trip");
        let held = h.master_key();
        h.reopen(h.config_with_keys(Some(Keyring::new(held.clone(), Vec::new()))))
            .await
            .unwrap();
        assert_eq!(opened(&h).await, expected, "after a restart");
        let stranger = Keyring::new(MasterKey::generate().unwrap(), Vec::new());
        let error = h.reopen(h.config_with_keys(Some(stranger))).await.expect_err("a wrong key");
        assert!(
            matches!(&error, StoreError::MasterKey(message) if message.contains(held.id().as_str())),
            "{error:?}"
        );
    }
);

contract_test!(
    fn sealed_keys_are_sealed_anew_by_a_master_key_rotation(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        h.store().create_webhook(new_webhook(project, &["*"], SigningKind::Hmac, now)).await.unwrap();
        h.store()
            .init_signing_keys(vec![key(KeyAlgorithm::EdDsa, "ed-1", now), key(KeyAlgorithm::Rs256, "rs-1", now)])
            .await
            .unwrap();
        let later = h.advance(secs(60));
        h.store()
            .rotate_signing_keys(vec![key(KeyAlgorithm::EdDsa, "ed-2", later)], later.saturating_add(secs(3600)))
            .await
            .unwrap();
        let expected = opened(&h).await;
        assert_eq!(expected.len(), 3, "the retiring key is still published");

        let old = h.master_key();
        let new = MasterKey::generate().unwrap();
        let both = Keyring::new(new.clone(), vec![old.clone()]);
        h.reopen(h.config_with_keys(Some(both.clone()))).await.unwrap();
        if h.backend == Backend::Sqlite {
            h.stop().await;
        }
        let rotation = herald::store::rotate_master_key(&h.config_with_keys(Some(both.clone())))
            .await
            .unwrap();
        assert_eq!(rotation.resealed, 4, "one webhook secret and three signing keys");
        let again = herald::store::rotate_master_key(&h.config_with_keys(Some(both))).await.unwrap();
        assert_eq!(again.resealed, 0, "idempotent");

        // The new key alone opens every signing key; a key made now is
        // sealed under it too.
        h.reopen(h.config_with_keys(Some(Keyring::new(new.clone(), Vec::new())))).await.unwrap();
        assert_eq!(opened(&h).await, expected, "the same keys, sealed anew");
        let rs2 = key(KeyAlgorithm::Rs256, "rs-2", h.now());
        let rs2_private = rs2.private_key.to_string();
        h.store().rotate_signing_keys(vec![rs2], h.now()).await.unwrap();
        assert!(opened(&h).await.contains(&("rs-2".to_owned(), rs2_private)));
        // And a node holding only the old key is refused.
        let error = h
            .reopen(h.config_with_keys(Some(Keyring::new(old, Vec::new()))))
            .await
            .expect_err("the old key alone");
        assert!(error.to_string().contains(new.id().as_str()), "{error}");
    }
);
