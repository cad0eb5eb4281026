//! Publishing: fan-out to matching webhooks, idempotency, pruning.

use std::collections::{BTreeSet, HashMap};

use herald::domain::{DeliveryState, EventId, SigningKind, WebhookId, WebhookState};
use herald::store::{Progress, PublishOutcome, StoreError, WebhookPatch};

use crate::support::*;

contract_test!(
    fn publish_fans_out_to_matching_webhooks(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other_project = new_project(store, "other", now).await;
        let exact = webhook(store, project, &["batch.succeeded"], now).await;
        let prefix = webhook(store, project, &["batch.*"], now).await;
        let all = webhook(store, project, &["*"], now).await;
        let jobs_only = webhook(store, project, &["job.*", "other.exact"], now).await;
        let disabled = webhook(store, project, &["*"], now).await;
        let deleted = webhook(store, project, &["*"], now).await;
        let foreign = webhook(store, other_project, &["*"], now).await;
        let patch = WebhookPatch {
            state: Some(WebhookState::Disabled),
            ..WebhookPatch::default()
        };
        store.update_webhook(project, disabled, patch, now).await.unwrap().unwrap();
        assert!(store.delete_webhook(project, deleted, now).await.unwrap());

        let now = h.advance(secs(1));
        let events = vec![
            event("batch.succeeded", now),
            event("batch.failed", now),
            event("job.done", now),
            // "batch.*" matches below "batch." only, never "batch" itself.
            event("batch", now),
            event("batch.x.y", now),
        ];
        let ids: Vec<_> = events.iter().map(|e| e.id).collect();
        let payloads: Vec<_> = events.iter().map(|e| e.payload.clone()).collect();
        let outcome = store.publish(request(project, events, now)).await.unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 10 });

        let expected: [&[WebhookId]; 5] = [
            &[exact, prefix, all],
            &[prefix, all],
            &[all, jobs_only],
            &[all],
            &[prefix, all],
        ];
        for ((id, want), payload) in ids.iter().zip(expected).zip(&payloads) {
            let event = get_event(store, project, *id).await;
            assert_eq!(event.id, *id);
            assert_eq!(event.timestamp, now);
            assert_eq!(&event.payload, payload, "the exact bytes are kept");
            let got: BTreeSet<WebhookId> = event.deliveries.iter().map(|d| d.webhook_id).collect();
            assert_eq!(got, want.iter().copied().collect(), "{}", event.event_type);
            assert_eq!(event.deliveries.len(), want.len(), "one delivery per webhook");
            for delivery in &event.deliveries {
                assert_eq!(delivery.state, DeliveryState::Pending);
                assert_eq!(delivery.attempt_count, 0);
                assert_eq!(delivery.next_attempt_time, Some(now), "due at once");
                assert!(delivery.last_attempt.is_none());
                assert_eq!(delivery.last_error, None);
            }
        }
        assert!(
            store.get_event(other_project, ids[0]).await.unwrap().is_none(),
            "an event is visible only in its own project"
        );

        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 10);
        let mut per_webhook: HashMap<WebhookId, usize> = HashMap::new();
        for job in &jobs {
            *per_webhook.entry(job.endpoint.webhook_id).or_default() += 1;
        }
        for nobody in [disabled, deleted, foreign] {
            assert!(!per_webhook.contains_key(&nobody), "{nobody} got a delivery");
        }
        assert_eq!(per_webhook[&all], 5);
        assert_eq!(per_webhook[&prefix], 3);
        assert_eq!(per_webhook[&exact], 1);
        assert_eq!(per_webhook[&jobs_only], 1);
    }
);

contract_test!(
    fn an_event_nobody_subscribes_to_is_stored_without_deliveries(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["batch.*"], now).await;
        let event = event("job.done", now);
        let id = event.id;
        let outcome = store.publish(request(project, vec![event], now)).await.unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 0 });
        let stored = get_event(store, project, id).await;
        assert_eq!(stored.event_type.as_str(), "job.done");
        assert!(stored.deliveries.is_empty());
        assert!(claim_jobs(store, claim_all(now)).await.is_empty());
        assert_eq!(store.queue_stats(now).await.unwrap().pending, 0);
    }
);

contract_test!(
    fn a_replayed_idempotency_key_answers_the_stored_response_and_creates_nothing(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other_project = new_project(store, "other", now).await;
        webhook(store, project, &["*"], now).await;

        let first = event("batch.succeeded", now);
        let first_id = first.id;
        let outcome = store
            .publish(keyed(request(project, vec![first], now), "key-1", "body-a", "response-a"))
            .await
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 1 });

        let now = h.advance(secs(5));
        let again = event("batch.succeeded", now);
        let again_id = again.id;
        let outcome = store
            .publish(keyed(request(project, vec![again], now), "key-1", "body-a", "ignored"))
            .await
            .unwrap();
        assert_eq!(
            outcome,
            PublishOutcome::Replayed {
                response: b"response-a".to_vec()
            }
        );
        assert!(
            store.get_event(project, again_id).await.unwrap().is_none(),
            "a replay stores no event"
        );
        assert_eq!(store.queue_stats(now).await.unwrap().pending, 1, "nor a delivery");
        assert_eq!(get_event(store, project, first_id).await.deliveries.len(), 1);

        let conflicting = event("batch.succeeded", now);
        let conflicting_id = conflicting.id;
        let error = store
            .publish(keyed(request(project, vec![conflicting], now), "key-1", "body-b", "response-b"))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::IdempotencyConflict), "{error:?}");
        assert!(store.get_event(project, conflicting_id).await.unwrap().is_none());
        assert_eq!(store.queue_stats(now).await.unwrap().pending, 1);

        // Keys belong to a project: another project may use the same one.
        let outcome = store
            .publish(keyed(
                request(other_project, vec![event("batch.succeeded", now)], now),
                "key-1",
                "body-b",
                "response-b",
            ))
            .await
            .unwrap();
        assert_eq!(outcome, PublishOutcome::Published { deliveries: 0 });
    }
);

contract_test!(
    fn pruning_forgets_only_keys_recorded_before_the_cutoff(h) {
        let store = h.store();
        let project = new_project(store, "acme", h.now()).await;
        let early = h.now();
        let publish_keyed = |key: &'static str, body: &'static str, now| {
            let store = store.clone();
            async move {
                store
                    .publish(keyed(request(project, vec![event("a.b", now)], now), key, body, body))
                    .await
            }
        };
        publish_keyed("old", "one", early).await.unwrap();
        let late = h.advance(secs(3600));
        publish_keyed("new", "one", late).await.unwrap();

        assert_eq!(store.prune_idempotency_keys(early).await.unwrap(), Progress::Done(0));
        let cutoff = early.saturating_add(secs(1800));
        assert_eq!(store.prune_idempotency_keys(cutoff).await.unwrap(), Progress::Done(1));
        assert_eq!(store.prune_idempotency_keys(cutoff).await.unwrap(), Progress::Done(0));

        let now = h.advance(secs(1));
        assert!(
            matches!(publish_keyed("old", "two", now).await, Ok(PublishOutcome::Published { .. })),
            "a forgotten key is new again"
        );
        assert!(
            matches!(publish_keyed("new", "two", now).await, Err(StoreError::IdempotencyConflict)),
            "a key recorded after the cutoff is kept"
        );
        assert!(matches!(
            publish_keyed("new", "one", now).await,
            Ok(PublishOutcome::Replayed { .. })
        ));
    }
);

contract_test!(
    fn pruning_many_keys_goes_in_bounded_pieces(h) {
        // More keys than one piece may hold (pieces are at most 10 000).
        const KEYS: u64 = 10_001;
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let publishes = (0..KEYS).map(|n| {
            let store = store.clone();
            async move {
                let key = format!("key-{n}");
                store
                    .publish(keyed(request(project, Vec::new(), now), &key, &key, "{}"))
                    .await
            }
        });
        for outcome in futures_util::future::join_all(publishes).await {
            assert_eq!(outcome.unwrap(), PublishOutcome::Published { deliveries: 0 });
        }
        let later = h.advance(secs(1));
        let mut pieces = Vec::new();
        loop {
            let progress = store.prune_idempotency_keys(later).await.unwrap();
            pieces.push(progress);
            if progress.is_done() || pieces.len() > KEYS as usize {
                break;
            }
        }
        assert!(matches!(pieces[0], Progress::More(n) if n > 0 && n < KEYS), "{pieces:?}");
        assert!(pieces.last().unwrap().is_done(), "{pieces:?}");
        assert_eq!(pieces.iter().map(|p| p.count()).sum::<u64>(), KEYS, "{pieces:?}");
        assert_eq!(store.prune_idempotency_keys(later).await.unwrap(), Progress::Done(0));
    }
);

contract_test!(
    fn limits_refuse_whole_requests_and_write_nothing(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        for _ in 0..3 {
            webhook(store, project, &["*"], now).await;
        }
        let mut fourth = new_webhook(project, &["*"], SigningKind::Hmac, now);
        fourth.max_per_project = 3;
        match store.create_webhook(fourth).await {
            Err(StoreError::LimitExceeded(message)) => assert!(message.contains("max_webhooks_per_project = 3"), "{message}"),
            other => panic!("a fourth webhook over a limit of 3: {other:?}"),
        }
        // 2 events × 3 webhooks = 6 deliveries, over a limit of 5.
        let events = vec![event("batch.completed", now), event("batch.failed", now)];
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let mut over = request(project, events, now);
        over.max_deliveries = 5;
        match store.publish(over).await {
            Err(StoreError::LimitExceeded(message)) => assert!(message.contains("(5)"), "{message}"),
            other => panic!("a fan-out of 6 over a limit of 5: {other:?}"),
        }
        for id in ids {
            assert!(store.get_event(project, id).await.unwrap().is_none(), "nothing of a refused request is stored");
        }
        let mut at_limit = request(project, vec![event("batch.completed", now), event("batch.failed", now)], now);
        at_limit.max_deliveries = 6;
        assert_eq!(
            store.publish(at_limit).await.unwrap(),
            PublishOutcome::Published { deliveries: 6 },
            "exactly at the limit is allowed"
        );
    }
);
