//! Replay: re-queueing a webhook's failed range in the background,
//! resuming after a restart, and refusing an overlapping second replay.

use std::collections::HashSet;
use std::time::Duration;

use herald::clock::SharedClock;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, START, TestApp};

const EVENTS: usize = 300;

async fn replay(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, replay) = app
        .call(Method::GET, &format!("/v1/replays/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{replay}");
    replay
}

#[tokio::test]
async fn a_failed_range_is_replayed_once_each_across_a_restart_and_an_overlap_is_refused() {
    let app = TestApp::spawn_with(|config| {
        config.delivery.retry_schedule = vec![Duration::from_secs(60)];
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500));
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["batch.*"]).await;
    let webhook_id = webhook["id"].as_str().unwrap().to_owned();
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({ "type": "batch.succeeded", "data": { "n": i } }))
        .collect();
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/events:batchCreate",
            Some(&project.key),
            Some(json!({ "events": events })),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    app.deliver_due().await;
    app.advance(Duration::from_secs(60));
    app.deliver_due().await;
    assert_eq!(receiver.count(), 2 * EVENTS, "every delivery failed twice, for good");

    // The endpoint is fixed; replay what failed in the last hour.
    receiver.always(Reply::status(204));
    app.advance(Duration::from_secs(60));
    let since = herald::domain::Timestamp::from_millis(START.as_millis() - 3_600_000);
    let path = format!("/v1/webhooks/{webhook_id}:replay");
    let (status, created) = app
        .call(
            Method::POST,
            &path,
            Some(&project.key),
            Some(json!({ "since": since, "state": "failed" })),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    assert_eq!(created["state"], "running");
    assert_eq!(created["requeued_count"], 0);
    let replay_id = created["id"].as_str().unwrap().to_owned();

    // A second replay over part of the range is refused while it runs; a
    // disjoint one is not.
    let (status, refused) = app
        .call(
            Method::POST,
            &path,
            Some(&project.key),
            Some(json!({ "since": START, "state": "all" })),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "conflict");
    let (status, disjoint) = app
        .call(
            Method::POST,
            &path,
            Some(&project.key),
            Some(json!({ "since": "2025-01-01T00:00:00Z", "until": "2025-01-02T00:00:00Z" })),
        )
        .await;
    assert_eq!(status, 202, "{disjoint}");
    for (body, field) in [
        (json!({ "since": "yesterday" }), "since"),
        (json!({ "since": START, "until": "2025-01-01T00:00:00Z" }), "until"),
        (json!({ "since": START, "state": "pending" }), "state"),
    ] {
        let (status, error) = app.call(Method::POST, &path, Some(&project.key), Some(body)).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["field"], field, "{error}");
    }

    // One chunk, then a restart: the replay resumes after its cursor.
    let now = herald::clock::Clock::now(app.clock.as_ref());
    let step = app.running().store.step_replays(now).await.expect("a step");
    assert!(!step.is_done());
    let partway = replay(&app, &project.key, &replay_id).await;
    assert!(partway["requeued_count"].as_u64().unwrap() > 0, "{partway}");
    let app = app.restart_with(|_| {}).await;
    let clock: SharedClock = app.clock.clone();
    herald::replay::run_once(app.running().store.as_ref(), &clock)
        .await
        .expect("replays finish");
    let done = replay(&app, &project.key, &replay_id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["examined_count"], EVENTS as u64, "{done}");
    assert_eq!(done["requeued_count"], EVENTS as u64, "{done}");
    assert!(done["finish_time"].as_str().is_some());

    // Each failed delivery was queued again exactly once.
    assert_eq!(app.deliver_due().await, EVENTS);
    let replayed = &receiver.received()[2 * EVENTS..];
    let ids: HashSet<&str> = replayed.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!((replayed.len(), ids.len()), (EVENTS, EVENTS));
    assert_eq!(app.deliver_due().await, 0);

    let (status, list) = app.call(Method::GET, "/v1/replays", Some(&project.key), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["replays"].as_array().unwrap().len(), 2, "{list}");
    let (status, _) = app
        .call(
            Method::GET,
            "/v1/replays/rpl_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 404);
}
