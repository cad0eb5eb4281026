//! `GET /v1/webhooks/{id}/stats`: counts by outcome and latency
//! percentiles over the last hour and the last day.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp};

async fn stats(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, stats) = app
        .call(Method::GET, &format!("/v1/webhooks/{id}/stats"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    stats
}

#[tokio::test]
async fn stats_count_outcomes_and_latency_per_window() {
    let app = TestApp::spawn_with(|config| {
        config.delivery.retry_schedule = vec![Duration::from_secs(3600)];
    })
    .await;
    let receiver = Receiver::start().await;
    // Eight successes (one slow), two failures.
    let mut replies = vec![
        Reply::status(500),
        Reply::status(500),
        Reply::status(200).after(Duration::from_millis(400)),
    ];
    replies.extend((0..7).map(|_| Reply::status(204)));
    receiver.script(replies);
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["batch.*"]).await;
    let id = webhook["id"].as_str().unwrap();
    let empty = stats(&app, &project.key, id).await;
    assert_eq!(empty["last_day"]["attempts"], 0, "{empty}");
    assert_eq!(empty["last_day"]["latency_ms"]["p50"], Value::Null, "{empty}");

    for n in 0..8 {
        app.publish(&project, "batch.succeeded", json!({ "n": n })).await;
        app.deliver_due().await;
    }
    app.advance(Duration::from_secs(3600));
    assert_eq!(app.deliver_due().await, 2, "the two failures are retried");

    let now = stats(&app, &project.key, id).await;
    assert_eq!(now["last_day"]["attempts"], 10, "{now}");
    assert_eq!(now["last_day"]["outcomes"]["success"], 8, "{now}");
    assert_eq!(now["last_day"]["outcomes"]["http_status"], 2, "{now}");
    // The retries happened this hour; the first attempts an hour ago.
    assert_eq!(now["last_hour"]["attempts"], 2, "{now}");
    assert_eq!(now["last_hour"]["outcomes"]["success"], 2, "{now}");
    let latency = &now["last_day"]["latency_ms"];
    let p50 = latency["p50"].as_u64().unwrap();
    let p99 = latency["p99"].as_u64().unwrap();
    assert!(p50 < 400, "{now}");
    assert!(p99 >= 400, "the slow attempt is the 99th percentile: {now}");
    assert!(latency["p90"].as_u64().unwrap() <= p99, "{now}");

    app.advance(Duration::from_secs(24 * 3600));
    let later = stats(&app, &project.key, id).await;
    assert_eq!(later["last_day"]["attempts"], 0, "{later}");

    let (status, _) = app
        .call(
            Method::GET,
            "/v1/webhooks/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV/stats",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 404);
}
