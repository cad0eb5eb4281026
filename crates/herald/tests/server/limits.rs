//! Per-project publish rate limit, consistent listings and metric buckets.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{ADMIN_KEY, TestApp};

#[tokio::test]
async fn a_project_over_its_publish_rate_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(|config| {
        config.limits.publish_rate_per_project = 1.0;
        config.limits.publish_burst_per_project = 2;
    })
    .await;
    let noisy = app.project("noisy").await;
    let quiet = app.project("quiet").await;
    let publish = |key: String| {
        let http = app.http.clone();
        let url = format!("{}/v1/events", app.base);
        async move {
            http.post(url)
                .bearer_auth(key)
                .json(&json!({ "type": "job.done", "data": {} }))
                .send()
                .await
                .expect("sent")
        }
    };
    for _ in 0..2 {
        assert_eq!(publish(noisy.key.clone()).await.status(), 202, "within the burst");
    }
    let refused = publish(noisy.key.clone()).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: serde_json::Value = refused.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(
        publish(quiet.key.clone()).await.status(),
        202,
        "other projects are unaffected"
    );

    let (status, body) = app
        .call(
            Method::POST,
            "/v1/events:batchCreate",
            Some(&noisy.key),
            Some(json!({ "events": [{ "type": "a.b", "data": {} }, { "type": "a.b", "data": {} }, { "type": "a.b", "data": {} }] })),
        )
        .await;
    assert_eq!(status, 400, "a batch larger than the burst can never pass: {body}");

    app.advance(Duration::from_secs(1));
    assert_eq!(publish(noisy.key.clone()).await.status(), 202, "refilled by the clock");
}

#[tokio::test]
async fn the_api_key_list_pages_like_the_other_lists() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let keys_path = format!("/v1/projects/{}/api_keys", project.id);
    for _ in 0..2 {
        let (status, _) = app
            .call(Method::POST, &keys_path, Some(ADMIN_KEY), Some(json!({})))
            .await;
        assert_eq!(status, 201);
    }
    let (status, first) = app
        .call(Method::GET, &format!("{keys_path}?page_size=2"), Some(ADMIN_KEY), None)
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["api_keys"].as_array().map(Vec::len), Some(2), "{first}");
    let token = first["next_page_token"].as_str().expect("a next page");
    let (status, second) = app
        .call(
            Method::GET,
            &format!("{keys_path}?page_size=2&page_token={token}"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["api_keys"].as_array().map(Vec::len), Some(1), "{second}");
    assert!(second.get("next_page_token").is_none(), "{second}");
}

#[tokio::test]
async fn histograms_have_buckets_that_fit_their_unit() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    app.publish(&project, "job.done", json!({})).await;
    let metrics = app.metrics().await;
    let batch_buckets: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("herald_store_commit_batch_size_bucket"))
        .collect();
    assert!(batch_buckets.iter().any(|line| line.contains(r#"le="1""#)), "{metrics}");
    assert!(
        !batch_buckets.iter().any(|line| line.contains(r#"le="0.001""#)),
        "a count has no sub-second buckets: {batch_buckets:?}"
    );
}

#[tokio::test]
async fn a_noisy_tenant_is_bounded_by_webhook_and_fan_out_limits() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_webhooks_per_project = 3;
        config.limits.max_fanout_per_request = 5;
    })
    .await;
    let noisy = app.project("noisy").await;
    for n in 0..3 {
        app.webhook(&noisy, &format!("http://127.0.0.1:9/{n}"), &["*"]).await;
    }
    let (status, error) = app
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&noisy.key),
            Some(json!({ "uri": "http://127.0.0.1:9/4", "subscribed_events": ["*"] })),
        )
        .await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["error"]["code"], "limit_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_webhooks_per_project = 3"),
        "{error}"
    );
    // 2 events × 3 webhooks = 6 deliveries: over the fan-out limit, all refused.
    let batch = json!({ "events": [{ "type": "a.b", "data": {} }, { "type": "a.c", "data": {} }] });
    let (status, error) = app
        .call(Method::POST, "/v1/events:batchCreate", Some(&noisy.key), Some(batch))
        .await;
    assert_eq!(status, 409, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_fanout_per_request (5)"),
        "{error}"
    );
    // One event × 3 webhooks is within it; another project is unaffected.
    app.publish(&noisy, "a.b", json!({})).await;
    let quiet = app.project("quiet").await;
    app.webhook(&quiet, "http://127.0.0.1:9/q", &["*"]).await;
    app.publish(&quiet, "a.b", json!({})).await;
}

/// One project flooding (batches at the fan-out limit, back to back) does
/// not hold another project's publishes for long: its p99 stays within 10×
/// of its quiet value (with a 20 ms floor, so that a sub-millisecond quiet
/// value on a busy shared machine does not make the bound meaningless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_project_does_not_stall_another_projects_publishes() {
    let app = TestApp::spawn_with(|config| config.limits.max_fanout_per_request = 5_000).await;
    let noisy = app.project("noisy").await;
    for n in 0..10 {
        app.webhook(&noisy, &format!("http://127.0.0.1:9/{n}"), &["*"]).await;
    }
    let quiet = app.project("quiet").await;
    app.webhook(&quiet, "http://127.0.0.1:9/quiet", &["*"]).await;

    async fn p99(app: &TestApp, project: &crate::support::Project) -> Duration {
        let mut samples = Vec::new();
        for _ in 0..60 {
            let started = std::time::Instant::now();
            app.publish(project, "job.done", json!({})).await;
            samples.push(started.elapsed());
        }
        samples.sort();
        samples[samples.len() * 99 / 100 - 1]
    }
    let calm = p99(&app, &quiet).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..3 {
        let (http, url, key, stop) = (
            app.http.clone(),
            format!("{}/v1/events:batchCreate", app.base),
            noisy.key.clone(),
            Arc::clone(&stop),
        );
        flooders.push(tokio::spawn(async move {
            let events: Vec<_> = (0..500)
                .map(|n| json!({ "type": "flood.x", "data": { "n": n } }))
                .collect();
            let body = json!({ "events": events });
            let mut sent = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let status = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent")
                    .status();
                assert_eq!(status, 202, "a batch at the fan-out limit is accepted");
                sent += 1;
            }
            sent
        }));
    }
    // Let the flood build up before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = p99(&app, &quiet).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut batches = 0;
    for flooder in flooders {
        batches += flooder.await.unwrap();
    }
    eprintln!("quiet p99 {calm:?}, during a flood of {batches} batches × 5,000 deliveries: {flooded:?}");
    assert!(batches >= 3, "the flood ran");
    let bound = calm.max(Duration::from_millis(20)) * 10;
    assert!(
        flooded <= bound,
        "p99 {flooded:?} during the flood, over 10 × {calm:?} (floor 20 ms)"
    );
}
