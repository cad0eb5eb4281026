//! The delivery queue's contract, driven through the store: leases,
//! reclaiming, fencing, per-endpoint caps, recovery after a crash.

use std::time::Duration;

use herald::domain::{AttemptRecord, Timestamp, WebhookId};
use herald::store::{ClaimRequest, Completion, CompletionResult, DeliveryJob, NextStep};
use serde_json::json;

use crate::support::{Receiver, START, TestApp};

fn claim(now: Timestamp, limit: usize, per_endpoint: u32, room: Vec<(WebhookId, u32)>) -> ClaimRequest {
    ClaimRequest {
        now,
        lease_until: now.saturating_add(Duration::from_secs(30)),
        limit,
        default_room: per_endpoint,
        room,
        max_leased_per_webhook: 1024,
    }
}

fn completion(job: &DeliveryJob, status: u16, next: NextStep, now: Timestamp) -> Completion {
    Completion {
        delivery_id: job.delivery_id,
        webhook_id: job.endpoint.webhook_id,
        lease: job.lease,
        attempt: Some(AttemptRecord {
            number: job.attempt_number,
            start_time: now,
            duration: Duration::from_millis(3),
            status_code: Some(status),
            response_excerpt: None,
            error_kind: None,
            error_message: None,
        }),
        next,
        last_error: None,
        disable_webhook: None,
        health: None,
        now,
    }
}

#[tokio::test]
async fn expired_leases_are_reclaimed_and_stale_completions_are_fenced() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    let store = &app.running().store;

    let first = store.claim(claim(START, 10, 10, vec![])).await.unwrap().jobs;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt_number, 1);
    assert!(
        store.claim(claim(START, 10, 10, vec![])).await.unwrap().jobs.is_empty(),
        "a leased delivery is not claimable"
    );

    let later = START.saturating_add(Duration::from_secs(31));
    let second = store.claim(claim(later, 10, 10, vec![])).await.unwrap().jobs;
    assert_eq!(second.len(), 1, "an expired lease is claimable again");
    assert_eq!(second[0].attempt_number, 2, "the lost attempt counts");
    assert_ne!(second[0].lease, first[0].lease);

    // The first worker reports late: its attempt is logged, the delivery is not its to change.
    let stale = store
        .complete(vec![completion(&first[0], 204, NextStep::Succeeded, later)])
        .await
        .unwrap();
    assert_eq!(stale, [CompletionResult::Stale]);
    let event = app.event(&project, &event_id).await;
    assert_eq!(event["deliveries"][0]["state"], "pending");
    assert_eq!(event["deliveries"][0]["last_attempt"]["status_code"], 204);

    let retry_at = later.saturating_add(Duration::from_secs(5));
    let applied = store
        .complete(vec![completion(&second[0], 500, NextStep::RetryAt(retry_at), later)])
        .await
        .unwrap();
    assert_eq!(applied, [CompletionResult::Applied]);
    let event = app.event(&project, &event_id).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["attempt_count"], 2);
    assert_eq!(delivery["next_attempt_time"], retry_at.to_rfc3339());
    // A second completion with the same (now used) lease changes nothing.
    let again = store
        .complete(vec![completion(&second[0], 204, NextStep::Succeeded, later)])
        .await
        .unwrap();
    assert_eq!(again, [CompletionResult::Stale]);
}

#[tokio::test]
async fn claims_respect_each_webhooks_room() {
    let app = TestApp::spawn().await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let project = app.project("acme").await;
    let webhook_a = app.webhook(&project, &a.url("/"), &["a.*"]).await;
    app.webhook(&project, &b.url("/"), &["b.*"]).await;
    for _ in 0..5 {
        app.publish(&project, "a.x", json!({})).await;
        app.publish(&project, "b.x", json!({})).await;
    }
    let a_id = WebhookId::parse(webhook_a["id"].as_str().unwrap()).unwrap();
    let store = &app.running().store;
    let jobs = store.claim(claim(START, 100, 2, vec![(a_id, 0)])).await.unwrap().jobs;
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter().all(|job| job.endpoint.webhook_id != a_id),
        "A has no room left"
    );
    let jobs = store.claim(claim(START, 100, 0, vec![(a_id, 1)])).await.unwrap().jobs;
    assert_eq!(jobs.len(), 1, "a webhook's own room overrides the default");
    assert_eq!(jobs[0].endpoint.webhook_id, a_id);
    let jobs = store.claim(claim(START, 3, 10, vec![])).await.unwrap().jobs;
    assert_eq!(jobs.len(), 3, "the total limit holds");
}

#[tokio::test]
async fn leases_of_a_crashed_process_are_recovered_at_start() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    let leased = app
        .running()
        .store
        .claim(claim(START, 10, 10, vec![]))
        .await
        .unwrap()
        .jobs;
    assert_eq!(leased.len(), 1);
    // The lease would run 30 s more; a restart must not wait for it.
    let app = app.restart_with(|_| {}).await;
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(receiver.count(), 1);
    let event = app.event(&project, &event_id).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["state"], "succeeded");
    assert_eq!(delivery["attempt_count"], 2, "the interrupted attempt is on the record");
}

#[tokio::test]
async fn deleting_a_webhook_with_a_large_backlog_fails_it_in_chunks() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let events: Vec<_> = (0..1000)
        .map(|n| json!({ "type": "batch.succeeded", "data": { "n": n } }))
        .collect();
    for _ in 0..11 {
        let (status, _) = app
            .call(
                reqwest::Method::POST,
                "/v1/events:batchCreate",
                Some(&project.key),
                Some(json!({ "events": events })),
            )
            .await;
        assert_eq!(status, 202);
    }
    assert!(app.metrics().await.contains("herald_deliveries_pending 11000"));
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    assert_eq!(
        app.call(reqwest::Method::DELETE, &path, Some(&project.key), None)
            .await
            .0,
        200
    );
    assert!(
        app.metrics().await.contains("herald_deliveries_pending 0"),
        "more than one chunk was failed"
    );
    assert_eq!(app.deliver_due().await, 0);
}

#[tokio::test]
async fn housekeeping_finishes_a_delete_interrupted_by_a_crash() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    // As if Herald died between marking the webhook deleted and failing its deliveries.
    let id = webhook["id"].as_str().unwrap();
    let app = app
        .restart_with_sql(&format!("UPDATE webhooks SET delete_time = 1 WHERE id = '{id}'"))
        .await;
    assert_eq!(app.deliver_due().await, 0, "a deleted webhook gets nothing");
    let store = app.running().store.as_ref();
    herald::maintenance::run_once(store, &(app.clock.clone() as herald::clock::SharedClock))
        .await
        .unwrap();
    let delivery = &app.event(&project, &event_id).await["deliveries"][0];
    assert_eq!(
        (delivery["state"].as_str(), delivery["last_error"].as_str()),
        (Some("failed"), Some("webhook_deleted"))
    );
}
