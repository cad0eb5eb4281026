//! Retention: old finished events go, with their deliveries and attempts;
//! an event with unfinished work stays, however old.

use std::time::Duration;

use herald::clock::SharedClock;
use reqwest::Method;
use serde_json::json;

use crate::support::{Receiver, Reply, TestApp};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn retention_prunes_old_finished_events_and_never_pending_work() {
    let app = TestApp::spawn().await;
    let ok = Receiver::start().await;
    let down = Receiver::start().await;
    down.always(Reply::status(500));
    let project = app.project("acme").await;
    app.webhook(&project, &ok.url("/"), &["batch.*"]).await;
    let held = app.webhook(&project, &down.url("/"), &["video.*"]).await;
    let held_id = held["id"].as_str().unwrap();

    let old_done = app.publish(&project, "batch.succeeded", json!({ "n": 1 })).await;
    let old_pending = app.publish(&project, "video.generated", json!({ "n": 2 })).await;
    assert_eq!(app.deliver_due().await, 2);
    // The failing webhook is disabled: its delivery waits, pending, for weeks.
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{held_id}"),
            Some(&project.key),
            Some(json!({ "state": "disabled" })),
        )
        .await;
    assert_eq!(status, 200);
    let attempts_before = app.query_count("SELECT COUNT(*) FROM attempts").await;
    assert_eq!(attempts_before, 2);

    app.advance(31 * DAY);
    let recent = app.publish(&project, "batch.succeeded", json!({ "n": 3 })).await;
    assert_eq!(app.deliver_due().await, 1);

    let clock: SharedClock = app.clock.clone();
    let pruned = herald::maintenance::prune_retained(app.running().store.as_ref(), &clock, 30 * DAY)
        .await
        .expect("pruning runs");
    assert_eq!(pruned, 1);
    let (status, _) = app
        .call(Method::GET, &format!("/v1/events/{old_done}"), Some(&project.key), None)
        .await;
    assert_eq!(status, 404, "the old finished event is gone");
    let pending = app.event(&project, &old_pending).await;
    assert_eq!(pending["deliveries"][0]["state"], "pending", "{pending}");
    app.event(&project, &recent).await;
    // The pruned event's attempt went with it; the others stay.
    assert_eq!(app.query_count("SELECT COUNT(*) FROM attempts").await, 2);
    assert_eq!(app.query_count("SELECT COUNT(*) FROM deliveries").await, 2);

    // A second pass finds nothing more to do.
    let again = herald::maintenance::prune_retained(app.running().store.as_ref(), &clock, 30 * DAY)
        .await
        .expect("pruning runs");
    assert_eq!(again, 0);
}
