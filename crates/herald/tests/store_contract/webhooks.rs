//! Webhooks: create, read, list (paged), update, delete.

use herald::domain::project::Name;
use herald::domain::{DeliveryState, EndpointUri, ProjectId, SigningKind, SubscribedEvents, WebhookId, WebhookState};
use herald::store::{CompletionResult, NextStep, PageRequest, Progress, PublishOutcome, WebhookPatch};

use crate::support::*;

contract_test!(
    fn webhooks_are_created_read_and_updated(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other_project = new_project(store, "other", now).await;
        let new = new_webhook(project, &["batch.*", "job.done"], SigningKind::Hmac, now);
        let (id, secret_id, display) = (new.id, new.secret.id, new.secret.material.display());
        let created = store.create_webhook(new).await.unwrap();
        assert_eq!(created.id, id);
        assert_eq!(created.project_id, project);
        assert_eq!(created.name.as_str(), "receiver");
        assert_eq!(created.uri.as_str(), "https://hooks.example.com/herald");
        assert_eq!(created.subscribed_events.to_strings(), ["batch.*", "job.done"]);
        assert_eq!((created.state, created.state_reason.as_deref()), (WebhookState::Enabled, None));
        assert_eq!(created.signing, SigningKind::Hmac);
        assert_eq!((created.create_time, created.update_time), (now, now));
        assert_eq!(created.signing_secrets.len(), 1);
        let info = &created.signing_secrets[0];
        assert_eq!((info.id, info.display.as_str()), (secret_id, display.as_str()));
        assert_eq!((info.public_key.as_deref(), info.create_time, info.expire_time), (None, now, None));

        let got = get_webhook(store, project, id, now).await;
        assert_eq!((got.id, got.name.as_str(), got.uri.as_str()), (id, "receiver", created.uri.as_str()));
        assert_eq!(got.signing_secrets.len(), 1);
        assert!(store.get_webhook(other_project, id, now).await.unwrap().is_none(), "another project's");
        assert!(store.get_webhook(project, WebhookId::generate(), now).await.unwrap().is_none());

        let ed = store
            .create_webhook(new_webhook(project, &["*"], SigningKind::Ed25519, now))
            .await
            .unwrap();
        assert_eq!(ed.signing, SigningKind::Ed25519);
        let public = ed.signing_secrets[0].public_key.as_deref().expect("a public key");
        assert!(public.starts_with("whpk_"), "{public}");

        let later = h.advance(secs(60));
        let renamed = store
            .update_webhook(
                project,
                id,
                WebhookPatch {
                    name: Some(Name::parse("renamed").unwrap()),
                    ..WebhookPatch::default()
                },
                later,
            )
            .await
            .unwrap()
            .expect("updated");
        assert_eq!(renamed.name.as_str(), "renamed");
        assert_eq!(renamed.uri, created.uri, "fields not in the patch stay");
        assert_eq!(renamed.subscribed_events, created.subscribed_events);
        assert_eq!(renamed.state, WebhookState::Enabled);
        assert_eq!((renamed.create_time, renamed.update_time), (now, later));

        let patch = WebhookPatch {
            uri: Some(EndpointUri::parse("https://elsewhere.example.com/in").unwrap()),
            subscribed_events: Some(SubscribedEvents::parse(&["only.this"]).unwrap()),
            state: Some(WebhookState::DisabledDueToFailedDeliveries),
            ..WebhookPatch::default()
        };
        let patched = store.update_webhook(project, id, patch, later).await.unwrap().unwrap();
        assert_eq!(patched.name.as_str(), "renamed");
        assert_eq!(patched.uri.as_str(), "https://elsewhere.example.com/in");
        assert_eq!(patched.subscribed_events.to_strings(), ["only.this"]);
        assert_eq!(patched.state, WebhookState::DisabledDueToFailedDeliveries);
        let reread = get_webhook(store, project, id, later).await;
        assert_eq!(reread.state, WebhookState::DisabledDueToFailedDeliveries, "the update is stored");
        assert_eq!(reread.uri.as_str(), "https://elsewhere.example.com/in");

        let patch = WebhookPatch {
            state: Some(WebhookState::Enabled),
            ..WebhookPatch::default()
        };
        let enabled = store.update_webhook(project, id, patch.clone(), later).await.unwrap().unwrap();
        assert_eq!(enabled.state, WebhookState::Enabled);
        // The new subscription decides fan-out.
        let outcome = store
            .publish(request(project, vec![event("only.this", later), event("batch.x", later)], later))
            .await
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 3 }, "one here, both to the ed25519 webhook");

        assert!(
            store.update_webhook(project, WebhookId::generate(), patch.clone(), later).await.unwrap().is_none()
        );
        assert!(
            store.update_webhook(other_project, id, patch, later).await.unwrap().is_none(),
            "another project's webhook cannot be changed"
        );
        assert_eq!(get_webhook(store, project, id, later).await.name.as_str(), "renamed");
    }
);

async fn list_all(h: &Harness, project: ProjectId, size: u32) -> Vec<Vec<WebhookId>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .store()
            .list_webhooks(
                project,
                PageRequest {
                    size,
                    after: after.clone(),
                },
                h.now(),
            )
            .await
            .unwrap();
        assert!(page.items.len() <= size as usize, "a page holds at most its size");
        pages.push(page.items.iter().map(|w| w.id).collect());
        match page.next_after {
            Some(next) => after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 100, "the listing does not end");
    }
}

contract_test!(
    fn webhooks_are_listed_in_pages_without_duplicates(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other_project = new_project(store, "other", now).await;
        webhook(store, other_project, &["*"], now).await;
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(webhook(store, project, &["*"], now).await);
        }
        let deleted = ids.pop().unwrap();
        assert!(store.delete_webhook(project, deleted, now).await.unwrap());
        ids.sort();

        let pages = list_all(&h, project, 3).await;
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let listed: Vec<WebhookId> = pages.concat();
        assert_eq!(listed, ids, "every webhook once, in id order, without the deleted one");

        // A last page that is exactly full may say "more"; the next one is then empty.
        let pages = list_all(&h, project, 7).await;
        assert_eq!(pages.concat(), ids);
        assert!(pages.len() <= 2 && pages.last().unwrap().len() <= 7);

        let one = store
            .list_webhooks(project, PageRequest { size: 100, after: None }, now)
            .await
            .unwrap();
        assert_eq!(one.items.len(), 7);
        assert!(one.next_after.is_none(), "a short page is the last");
        assert!(one.items.iter().all(|w| w.signing_secrets.len() == 1), "listings show the secrets");
    }
);

contract_test!(
    fn deleting_a_webhook_fails_its_unfinished_deliveries(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        let survivor = webhook(store, project, &["a.*"], now).await;
        let mut ids = Vec::new();
        for event_type in ["x.delivered", "x.in_flight", "x.waiting"] {
            // One after the other, so that a claim takes them in this order.
            ids.extend(publish(store, project, &[event_type], h.now()).await);
            h.advance(secs(1));
        }
        let now = h.now();
        let jobs = claim_jobs(store, claim(now, 2, 10, vec![], 10)).await;
        assert_eq!(jobs.len(), 2);
        let delivered = jobs.iter().find(|j| j.event_id == ids[0]).unwrap();
        let in_flight = jobs.iter().find(|j| j.event_id == ids[1]).unwrap();
        store
            .complete(vec![completion(delivered, 200, NextStep::Succeeded, now)])
            .await
            .unwrap();
        publish(store, project, &["a.kept"], now).await;

        let later = h.advance(secs(5));
        assert!(store.delete_webhook(project, hook, later).await.unwrap());
        assert!(!store.delete_webhook(project, hook, later).await.unwrap(), "already deleted");
        assert!(!store.delete_webhook(project, WebhookId::generate(), later).await.unwrap());
        assert!(store.get_webhook(project, hook, later).await.unwrap().is_none());
        let patch = WebhookPatch {
            state: Some(WebhookState::Enabled),
            ..WebhookPatch::default()
        };
        assert!(store.update_webhook(project, hook, patch, later).await.unwrap().is_none());

        assert_eq!(delivery(store, project, ids[0]).await.state, DeliveryState::Succeeded, "finished stays");
        for id in &ids[1..] {
            let view = delivery(store, project, *id).await;
            assert_eq!(view.state, DeliveryState::Failed);
            assert_eq!(view.last_error.as_deref(), Some("webhook_deleted"));
            assert_eq!(view.next_attempt_time, None);
        }
        let late = store
            .complete(vec![completion(in_flight, 200, NextStep::Succeeded, later)])
            .await
            .unwrap();
        assert_eq!(late, [CompletionResult::Stale], "the in-flight attempt finds its lease gone");
        assert_eq!(delivery(store, project, ids[1]).await.state, DeliveryState::Failed);

        assert_eq!(store.fail_orphaned_deliveries(later).await.unwrap(), Progress::Done(0));
        let far = later.saturating_add(secs(3600));
        let jobs = claim_jobs(store, claim_all(far)).await;
        assert_eq!(jobs.len(), 1, "only the other webhook's delivery is left");
        assert_eq!(jobs[0].endpoint.webhook_id, survivor);
        let outcome = store
            .publish(request(project, vec![event("x.after", far)], far))
            .await
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 0 });
    }
);

contract_test!(
    fn failing_orphaned_deliveries_reports_progress(h) {
        let store = h.store();
        let now = h.now();
        assert_eq!(store.fail_orphaned_deliveries(now).await.unwrap(), Progress::Done(0));
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        let ids = publish(store, project, &["a.b"], now).await;
        assert_eq!(
            store.fail_orphaned_deliveries(now).await.unwrap(),
            Progress::Done(0),
            "a live webhook's deliveries are not orphans"
        );
        assert_eq!(delivery(store, project, ids[0]).await.state, DeliveryState::Pending);
        assert!(store.delete_webhook(project, hook, now).await.unwrap());
        assert_eq!(store.fail_orphaned_deliveries(now).await.unwrap(), Progress::Done(0));
        let view = delivery(store, project, ids[0]).await;
        assert_eq!(view.state, DeliveryState::Failed);
        assert_eq!(view.last_error.as_deref(), Some("webhook_deleted"));
    }
);
