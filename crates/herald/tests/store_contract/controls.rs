//! Per-endpoint controls in the claim: the rate limit measured over a
//! window, `max_concurrency`, FIFO order under failures and across a
//! restart, the retry schedule travelling with the job, and other
//! webhooks unaffected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use herald::domain::controls::{EndpointControls, MaxConcurrency, Ordering, RateLimit, RetrySchedule};
use herald::domain::{EventId, ProjectId, Timestamp, WebhookId};
use herald::store::controls::ControlsPatch;
use herald::store::{CompletionResult, DeliveryJob, NextStep, Store, WebhookPatch};

use crate::support::*;

async fn controlled(
    store: &Arc<dyn Store>,
    project: ProjectId,
    controls: EndpointControls,
    now: Timestamp,
) -> WebhookId {
    let mut new = new_webhook(project, &["*"], herald::domain::SigningKind::Hmac, now);
    new.controls = controls;
    store.create_webhook(new).await.expect("create a webhook").id
}

fn rate(per_second: u64) -> EndpointControls {
    EndpointControls {
        rate_limit: Some(RateLimit::new(per_second).unwrap()),
        ..EndpointControls::default()
    }
}

fn fifo() -> EndpointControls {
    EndpointControls {
        ordering: Ordering::Fifo,
        ..EndpointControls::default()
    }
}

fn of(jobs: &[DeliveryJob], webhook: WebhookId) -> Vec<DeliveryJob> {
    jobs.iter()
        .filter(|j| j.endpoint.webhook_id == webhook)
        .cloned()
        .collect()
}

async fn succeed(store: &Arc<dyn Store>, jobs: &[DeliveryJob], now: Timestamp) {
    let done = store
        .complete(
            jobs.iter()
                .map(|j| completion(j, 200, NextStep::Succeeded, now))
                .collect(),
        )
        .await
        .unwrap();
    assert!(done.iter().all(|r| *r == CompletionResult::Applied));
}

/// Publishes one event per millisecond, so their event times are ordered.
async fn publish_in_order(h: &Harness, project: ProjectId, count: usize) -> Vec<EventId> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let now = h.advance(Duration::from_millis(1));
        ids.extend(publish(h.store(), project, &["order.created"], now).await);
    }
    ids
}

contract_test!(
    fn controls_rate_limit_holds_over_a_window_and_defers_the_hint(h) {
        let store = h.store().clone();
        let start = h.now();
        let project = new_project(&store, "acme", start).await;
        let limited = controlled(&store, project, rate(5), start).await;
        let free = webhook(&store, project, &["*"], start).await;
        for _ in 0..4 {
            publish(&store, project, &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], start).await;
        }
        // Step the clock 50 ms at a time for 4 s, claiming and finishing
        // everything each step; count the rate-limited sends per second.
        let mut per_second = [0usize; 4];
        let mut free_sent = 0;
        for step in 0..80u64 {
            let now = start.saturating_add(Duration::from_millis(step * 50));
            let batch = store.claim(claim_all(now)).await.unwrap();
            let mine = of(&batch.jobs, limited);
            per_second[usize::try_from(step / 20).unwrap()] += mine.len();
            free_sent += of(&batch.jobs, free).len();
            if !mine.is_empty() {
                // Not spinning: the claim names the next token as the next due time.
                assert_eq!(
                    batch.next_due,
                    Some(now.saturating_add(Duration::from_millis(200))),
                    "step {step}"
                );
            }
            succeed(&store, &batch.jobs, now).await;
        }
        assert_eq!(per_second, [5, 5, 5, 5], "5 per simulated second, no burst");
        assert_eq!(free_sent, 40, "the webhook without a limit is not held back");
    }
);

contract_test!(
    fn controls_concurrent_claims_never_exceed_the_rate_together(h) {
        let store = h.store().clone();
        let start = h.now();
        let project = new_project(&store, "acme", start).await;
        let limited = controlled(&store, project, rate(2), start).await;
        for _ in 0..3 {
            publish(&store, project, &["a", "b", "c", "d", "e", "f", "g", "h"], start).await;
        }
        // Eight claimers at once, every 100 ms for 3 s (on PostgreSQL each
        // claim is its own transaction on its own connection).
        let mut sent: Vec<Timestamp> = Vec::new();
        for step in 0..30u64 {
            let now = start.saturating_add(Duration::from_millis(step * 100));
            let claims = (0..8).map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.claim(claim_all(now)).await.unwrap().jobs })
            });
            for claim in claims.collect::<Vec<_>>() {
                let jobs = claim.await.unwrap();
                assert!(jobs.iter().all(|j| j.endpoint.webhook_id == limited));
                sent.extend(jobs.iter().map(|_| now));
                succeed(&store, &jobs, now).await;
            }
        }
        assert_eq!(sent.len(), 6, "2 per second over 3 s: {sent:?}");
        for pair in sent.windows(2) {
            assert!(pair[1].duration_since(pair[0]) >= Duration::from_millis(500), "{sent:?}");
        }
    }
);

contract_test!(
    fn controls_max_concurrency_caps_leases_across_claims(h) {
        let store = h.store().clone();
        let now = h.now();
        let project = new_project(&store, "acme", now).await;
        let controls = EndpointControls {
            max_concurrency: Some(MaxConcurrency::new(2).unwrap()),
            ..EndpointControls::default()
        };
        let capped = controlled(&store, project, controls, now).await;
        let free = webhook(&store, project, &["*"], now).await;
        publish(&store, project, &["a", "b", "c", "d", "e", "f"], now).await;

        let first = store.claim(claim_all(now)).await.unwrap();
        assert_eq!(of(&first.jobs, capped).len(), 2, "at most max_concurrency leased");
        assert_eq!(of(&first.jobs, free).len(), 6, "others keep the server's cap");
        assert!(claim_jobs(&store, claim_all(now)).await.is_empty(), "no more while two are in flight");
        succeed(&store, &of(&first.jobs, capped)[..1], now).await;
        let next = claim_jobs(&store, claim_all(now)).await;
        assert_eq!(of(&next, capped).len(), 1, "one freed, one more");
        // A lower server cap still wins.
        succeed(&store, &next, now).await;
        succeed(&store, &of(&first.jobs, capped)[1..], now).await;
        let lower = claim_jobs(&store, claim(now, 100, 100, vec![], 1)).await;
        assert_eq!(of(&lower, capped).len(), 1);
    }
);

contract_test!(
    fn controls_fifo_goes_in_event_order_under_failures(h) {
        let store = h.store().clone();
        let project = new_project(&store, "acme", h.now()).await;
        let ordered = controlled(&store, project, fifo(), h.now()).await;
        let other = webhook(&store, project, &["*"], h.now()).await;
        let events = publish_in_order(&h, project, 3).await;
        let now = h.now();

        let first = store.claim(claim_all(now)).await.unwrap();
        assert_eq!(of(&first.jobs, other).len(), 3, "other webhooks are unaffected");
        let head = of(&first.jobs, ordered);
        assert_eq!(head.len(), 1, "one at a time");
        assert_eq!(head[0].event_id, events[0]);
        assert!(of(&claim_jobs(&store, claim_all(now)).await, ordered).is_empty());

        // The head fails and will be retried: the next waits behind it.
        let retry_at = now.saturating_add(secs(10));
        store
            .complete(vec![completion(&head[0], 500, NextStep::RetryAt(retry_at), now)])
            .await
            .unwrap();
        succeed(&store, &of(&first.jobs, other), now).await;
        let blocked = store.claim(claim_all(now)).await.unwrap();
        assert!(blocked.jobs.is_empty(), "the second may not overtake the first");
        assert_eq!(blocked.next_due, Some(retry_at), "the hint is the head's retry, no spinning");

        let later = h.advance(secs(10));
        let again = claim_jobs(&store, claim_all(later)).await;
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].event_id, again[0].attempt_number), (events[0], 2));
        // Exhausted: failed for good, so the next one may go at once.
        store
            .complete(vec![completion(&again[0], 500, NextStep::Failed, later)])
            .await
            .unwrap();
        let second = claim_jobs(&store, claim_all(later)).await;
        assert_eq!(second.iter().map(|j| j.event_id).collect::<Vec<_>>(), [events[1]]);
        succeed(&store, &second, later).await;
        let third = claim_jobs(&store, claim_all(later)).await;
        assert_eq!(third.iter().map(|j| j.event_id).collect::<Vec<_>>(), [events[2]]);
        succeed(&store, &third, later).await;
        assert!(claim_jobs(&store, claim_all(later.saturating_add(LEASE))).await.is_empty(), "all sent once");
    }
);

contract_test!(
    fn controls_fifo_order_survives_a_restart(h) {
        let project = new_project(h.store(), "acme", h.now()).await;
        let ordered = controlled(h.store(), project, fifo(), h.now()).await;
        let events = publish_in_order(&h, project, 2).await;
        let now = h.now();
        let leased = claim_jobs(h.store(), claim_all(now)).await;
        assert_eq!(leased.iter().map(|j| j.event_id).collect::<Vec<_>>(), [events[0]]);

        h.advance(secs(1));
        h.restart_after_crash().await;
        let now = h.now();
        let store = h.store().clone();
        let resumed = claim_jobs(&store, claim_all(now)).await;
        assert_eq!(resumed.len(), 1, "still one at a time");
        assert_eq!((resumed[0].event_id, resumed[0].attempt_number), (events[0], 2), "the head again, not the next");
        assert_eq!(resumed[0].endpoint.webhook_id, ordered);
        succeed(&store, &resumed, now).await;
        let next = claim_jobs(&store, claim_all(now)).await;
        assert_eq!(next.iter().map(|j| j.event_id).collect::<Vec<_>>(), [events[1]]);
    }
);

contract_test!(
    fn controls_are_stored_patched_cleared_and_travel_with_the_job(h) {
        let store = h.store().clone();
        let now = h.now();
        let project = new_project(&store, "acme", now).await;
        let schedule = RetrySchedule::new(vec![secs(1), secs(60)], secs(86_400)).unwrap();
        let controls = EndpointControls {
            rate_limit: Some(RateLimit::new(7).unwrap()),
            max_concurrency: Some(MaxConcurrency::new(3).unwrap()),
            ordering: Ordering::Fifo,
            retry_schedule: Some(schedule.clone()),
        };
        let id = controlled(&store, project, controls.clone(), now).await;
        assert_eq!(get_webhook(&store, project, id, now).await.controls, controls);

        publish(&store, project, &["a"], now).await;
        let jobs = claim_jobs(&store, claim_all(now)).await;
        assert_eq!(jobs[0].endpoint.retry_schedule.as_ref(), Some(&schedule));

        let patch = WebhookPatch {
            controls: ControlsPatch {
                rate_limit: Some(None),
                ordering: Some(Ordering::None),
                ..ControlsPatch::default()
            },
            ..WebhookPatch::default()
        };
        let updated = store.update_webhook(project, id, patch, now).await.unwrap().unwrap();
        assert_eq!(updated.controls.rate_limit, None);
        assert_eq!(updated.controls.ordering, Ordering::None);
        assert_eq!(updated.controls.max_concurrency, controls.max_concurrency, "untouched");
        assert_eq!(updated.controls.retry_schedule, Some(schedule));
        let mut counts: HashMap<WebhookId, usize> = HashMap::new();
        for job in jobs {
            *counts.entry(job.endpoint.webhook_id).or_default() += 1;
        }
        assert_eq!(counts.get(&id), Some(&1));
    }
);
