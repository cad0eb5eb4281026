//! Signing secrets: rotation with an overlap or at once, expiry by the
//! injected clock, and the master keys that seal them at rest.

use std::time::Duration;

use herald::domain::secret::{Keyring, MasterKey, RevocationBehavior};
use herald::domain::{SigningKind, WebhookId};
use herald::store::{DeliveryJob, NewSecret, RotateSigningSecret, StoreError};

use crate::support::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// What each of a job's secrets opens to, as the text shown to the user
/// (HMAC) or the public key (Ed25519).
fn opened(job: &DeliveryJob) -> Vec<String> {
    job.endpoint
        .secrets
        .iter()
        .map(|secret| {
            let material = secret.material.as_ref().expect("the secret opens");
            material
                .reveal_once()
                .map(|text| text.to_string())
                .or_else(|| material.public_key())
                .expect("something to compare")
        })
        .collect()
}

fn shown(secret: &NewSecret) -> String {
    secret
        .material
        .reveal_once()
        .map(|text| text.to_string())
        .or_else(|| secret.material.public_key())
        .expect("something to compare")
}

fn advance_to(h: &Harness, to: herald::domain::Timestamp) {
    let by = to.as_millis() - h.now().as_millis();
    h.advance(Duration::from_millis(u64::try_from(by).expect("forwards")));
}

/// Publishes one event and claims its delivery: what the dispatcher would sign with.
async fn signing_job(h: &Harness, project: herald::domain::ProjectId) -> DeliveryJob {
    publish(h.store(), project, &["batch.succeeded"], h.now()).await;
    let mut jobs = claim_jobs(h.store(), claim_all(h.now())).await;
    assert!(!jobs.is_empty(), "a delivery to sign");
    jobs.remove(0)
}

async fn rotate(
    h: &Harness,
    project: herald::domain::ProjectId,
    webhook: WebhookId,
    kind: SigningKind,
    behavior: RevocationBehavior,
) -> NewSecret {
    let secret = secret(kind);
    let now = h.now();
    let rotated = h
        .store()
        .rotate_signing_secret(RotateSigningSecret {
            project_id: project,
            webhook_id: webhook,
            secret: secret.clone(),
            previous_expire_time: behavior.previous_expire_time(now),
            now,
        })
        .await
        .unwrap()
        .expect("the webhook exists");
    assert_eq!(rotated.signing_secrets[0].id, secret.id, "newest first");
    assert_eq!(rotated.update_time, now);
    secret
}

contract_test!(
    fn secrets_rotate_with_a_day_of_overlap_then_the_old_one_stops(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        let new = new_webhook(project, &["*"], SigningKind::Hmac, now);
        let (webhook, first) = (new.id, new.secret.clone());
        h.store().create_webhook(new).await.unwrap();

        let later = h.advance(secs(60));
        let second = rotate(&h, project, webhook, SigningKind::Hmac, RevocationBehavior::AfterH24).await;
        let listed = get_webhook(h.store(), project, webhook, later).await.signing_secrets;
        assert_eq!(listed.len(), 2, "both sign during the overlap");
        assert_eq!((listed[0].id, listed[0].expire_time), (second.id, None));
        assert_eq!(
            (listed[1].id, listed[1].expire_time),
            (first.id, Some(later.saturating_add(DAY)))
        );
        let job = signing_job(&h, project).await;
        let mut expected = vec![shown(&first), shown(&second)];
        let mut got = opened(&job);
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "every live secret signs");

        // A second rotation during the overlap never extends the first's life.
        h.advance(secs(3600));
        let third = rotate(&h, project, webhook, SigningKind::Hmac, RevocationBehavior::AfterH24).await;
        let listed = get_webhook(h.store(), project, webhook, h.now()).await.signing_secrets;
        let expiry = |id| listed.iter().find(|s| s.id == id).and_then(|s| s.expire_time);
        assert_eq!(expiry(first.id), Some(later.saturating_add(DAY)));
        assert_eq!(expiry(second.id), Some(h.now().saturating_add(DAY)));
        assert_eq!(expiry(third.id), None);

        // At the first one's expiry, as the clock sees it, it stops signing.
        let end = later.saturating_add(DAY);
        advance_to(&h, minus_ms(end, 1));
        let listed = get_webhook(h.store(), project, webhook, h.now()).await.signing_secrets;
        assert_eq!(listed.len(), 3, "1 ms before its expiry it still signs");
        advance_to(&h, end);
        let listed = get_webhook(h.store(), project, webhook, end).await.signing_secrets;
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [third.id, second.id]);
        let job = signing_job(&h, project).await;
        assert!(!opened(&job).contains(&shown(&first)), "the expired secret no longer signs");
        assert_eq!(opened(&job).len(), 2);

        // Then it is deleted.
        let purged = h.store().purge_expired_secrets(end).await.unwrap();
        assert_eq!(purged, herald::store::Progress::Done(1));
        assert_eq!(h.store().purge_expired_secrets(end).await.unwrap().count(), 0);
    }
);

contract_test!(
    fn secrets_revoked_immediately_stop_signing_at_once(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        let new = new_webhook(project, &["*"], SigningKind::Ed25519, now);
        let (webhook, first) = (new.id, new.secret.clone());
        h.store().create_webhook(new).await.unwrap();
        h.advance(secs(5));
        let second = rotate(&h, project, webhook, SigningKind::Ed25519, RevocationBehavior::Immediately).await;
        let listed = get_webhook(h.store(), project, webhook, h.now()).await.signing_secrets;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].public_key, second.material.public_key());
        let job = signing_job(&h, project).await;
        assert_eq!(opened(&job), [shown(&second)]);
        assert_ne!(shown(&first), shown(&second));
        assert_eq!(
            h.store().purge_expired_secrets(h.now()).await.unwrap().count(),
            0,
            "an immediately revoked secret was deleted by the rotation itself"
        );
    }
);

contract_test!(
    fn secrets_rotation_of_a_missing_or_foreign_webhook_finds_nothing(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        let other = new_project(h.store(), "other", now).await;
        let webhook = webhook(h.store(), project, &["*"], now).await;
        for (project, webhook) in [(other, webhook), (project, WebhookId::generate())] {
            let result = h
                .store()
                .rotate_signing_secret(RotateSigningSecret {
                    project_id: project,
                    webhook_id: webhook,
                    secret: secret(SigningKind::Hmac),
                    previous_expire_time: now,
                    now,
                })
                .await
                .unwrap();
            assert!(result.is_none());
        }
        assert_eq!(get_webhook(h.store(), project, webhook, now).await.signing_secrets.len(), 1);
    }
);

contract_test!(
    fn secrets_a_wrong_or_missing_master_key_is_refused_at_open(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        webhook(h.store(), project, &["*"], now).await;
        let held = h.master_key();
        let stranger = Keyring::new(MasterKey::generate().unwrap(), Vec::new());
        let error = h.reopen(h.config_with_keys(Some(stranger))).await.expect_err("a wrong key");
        let StoreError::MasterKey(message) = &error else {
            panic!("expected a master key error: {error:?}")
        };
        assert!(message.contains(held.id().as_str()), "names the key needed: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
        if h.backend == Backend::Postgres {
            let error = h.reopen(h.config_with_keys(None)).await.expect_err("no key");
            assert!(error.to_string().contains("HERALD_MASTER_KEY"), "{error}");
        }
        // The right key still opens everything.
        h.reopen(h.config_with_keys(Some(Keyring::new(held, Vec::new())))).await.unwrap();
        let job = signing_job(&h, project).await;
        assert_eq!(opened(&job).len(), 1);
    }
);

contract_test!(
    fn secrets_a_master_key_rotation_reseals_every_secret_under_the_new_key(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        let hmac = new_webhook(project, &["batch.*"], SigningKind::Hmac, now);
        let ed = new_webhook(project, &["batch.*"], SigningKind::Ed25519, now);
        let mut expected = vec![shown(&hmac.secret), shown(&ed.secret)];
        let hmac_id = hmac.id;
        h.store().create_webhook(hmac).await.unwrap();
        h.store().create_webhook(ed).await.unwrap();
        expected.push(shown(
            &rotate(&h, project, hmac_id, SigningKind::Hmac, RevocationBehavior::AfterH24).await,
        ));
        let old = h.master_key();
        let new = MasterKey::generate().unwrap();
        let both = Keyring::new(new.clone(), vec![old.clone()]);
        if h.backend == Backend::Postgres {
            // A running node that lacks the new key blocks the switch.
            let error = herald::store::rotate_master_key(&h.config_with_keys(Some(both.clone())))
                .await
                .expect_err("a live node lacks the new key");
            assert!(error.to_string().contains("do not hold"), "{error}");
        }
        // Every node first learns both keys (a rolling restart); SQLite's
        // one process is stopped for the rotation itself.
        h.reopen(h.config_with_keys(Some(both.clone()))).await.unwrap();
        if h.backend == Backend::Sqlite {
            h.stop().await;
        }
        let rotation = herald::store::rotate_master_key(&h.config_with_keys(Some(both.clone())))
            .await
            .unwrap();
        assert_eq!((rotation.from.as_ref(), &rotation.to), (Some(old.id()), new.id()));
        assert_eq!(rotation.resealed, 3);
        let again = herald::store::rotate_master_key(&h.config_with_keys(Some(both))).await.unwrap();
        assert_eq!(again.resealed, 0, "idempotent");

        // The old key may now go: the new one alone opens every secret.
        h.reopen(h.config_with_keys(Some(Keyring::new(new.clone(), Vec::new())))).await.unwrap();
        publish(h.store(), project, &["batch.succeeded"], h.now()).await;
        let jobs = claim_jobs(h.store(), claim_all(h.now())).await;
        let mut got: Vec<String> = jobs.iter().flat_map(opened).collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "the same secrets, sealed anew");
        // A secret made now is sealed under the new key too.
        webhook(h.store(), project, &["*"], h.now()).await;
        // And a node holding only the old key is refused.
        let error = h
            .reopen(h.config_with_keys(Some(Keyring::new(old, Vec::new()))))
            .await
            .expect_err("the old key alone");
        assert!(error.to_string().contains(new.id().as_str()), "{error}");
        h.reopen(h.config_with_keys(Some(Keyring::new(new, Vec::new())))).await.unwrap();
    }
);
