//! The dispatcher running by itself: wake-ups, isolation of slow
//! endpoints, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use herald::clock::ManualClock;
use serde_json::json;

use crate::support::{Receiver, Reply, START, TestApp, test_config};

async fn live_app(adjust: impl FnOnce(&mut herald::config::Config)) -> TestApp {
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = test_config(data_dir.path());
    adjust(&mut config);
    TestApp::start(config, data_dir, Arc::new(ManualClock::new(START)), true).await
}

#[tokio::test]
async fn a_stalled_endpoint_does_not_delay_a_healthy_one() {
    let app = live_app(|config| {
        config.delivery.max_in_flight_per_endpoint = 2;
        config.delivery.timeout = Duration::from_secs(20);
        config.delivery.lease = Some(Duration::from_secs(60));
        config.delivery.shutdown_grace = Duration::from_millis(50);
    })
    .await;
    let (stalled, healthy) = (Receiver::start().await, Receiver::start().await);
    stalled.always(Reply::status(200).after(Duration::from_secs(15)));
    let project = app.project("acme").await;
    app.webhook(&project, &stalled.url("/"), &["slow.*"]).await;
    app.webhook(&project, &healthy.url("/"), &["fast.*"]).await;
    for _ in 0..20 {
        app.publish(&project, "slow.x", json!({})).await;
    }
    for _ in 0..20 {
        app.publish(&project, "fast.x", json!({})).await;
    }
    healthy.wait_for(20, Duration::from_secs(10)).await;
    // Ordering, not timing: every healthy delivery landed while the stalled
    // endpoint held no more than its cap.
    assert_eq!(
        stalled.count(),
        2,
        "the stalled endpoint gets at most its cap in flight"
    );
    app.running.unwrap().shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_in_flight_attempts_finish_or_returns_them() {
    let app = live_app(|config| config.delivery.shutdown_grace = Duration::from_secs(5)).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).after(Duration::from_millis(300)));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let finished = app.publish(&project, "batch.succeeded", json!({})).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let app = app
        .restart_with(|config| config.delivery.shutdown_grace = Duration::from_millis(20))
        .await;
    assert_eq!(
        app.event(&project, &finished).await["deliveries"][0]["state"],
        "succeeded"
    );

    // Now a grace period too short for the attempt: it is released, not lost.
    let app = {
        let mut config = app.config.clone();
        config.delivery.shutdown_grace = Duration::from_millis(20);
        let data_dir = Arc::clone(&app.data_dir);
        let clock = Arc::clone(&app.clock);
        app.running.unwrap().shutdown().await.unwrap();
        TestApp::start(config, data_dir, clock, true).await
    };
    receiver.always(Reply::status(200).after(Duration::from_secs(2)));
    let abandoned = app.publish(&project, "batch.succeeded", json!({})).await;
    receiver.wait_for(2, Duration::from_secs(10)).await;
    let app = app.restart_with(|_| {}).await;
    receiver.always(Reply::status(200));
    let event = app.event(&project, &abandoned).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["state"], "pending", "{event}");
    assert_eq!(delivery["attempt_count"], 1, "the cut-off attempt counts");
    assert_eq!(delivery["last_attempt"]["error_kind"], "interrupted", "{event}");
    assert_eq!(delivery["last_error"], "interrupted", "one consistent error: {event}");
    // The request had been open since before `wait_for` saw it arrive: the
    // record keeps its real duration, not zero.
    assert!(
        delivery["last_attempt"]["duration_ms"].as_u64().unwrap() > 0,
        "a cut-off attempt keeps its duration: {event}"
    );
    assert_eq!(app.deliver_due().await, 1, "released deliveries are due at once");
    let delivery = &app.event(&project, &abandoned).await["deliveries"][0];
    assert_eq!(
        (delivery["state"].as_str(), delivery["attempt_count"].as_u64()),
        (Some("succeeded"), Some(2))
    );
}

#[tokio::test]
async fn many_stalled_endpoints_with_backlogs_do_not_starve_a_healthy_one() {
    // Eight endpoints that never answer, each with a backlog, fill the whole
    // in-flight budget (8 × an eighth of it); their timeouts must shrink
    // them to one request each so the healthy endpoint gets through.
    let app = live_app(|config| {
        config.delivery.max_in_flight = 16;
        config.delivery.max_in_flight_per_endpoint = 4;
        config.delivery.timeout = Duration::from_millis(500);
        config.delivery.lease = Some(Duration::from_secs(30));
        config.delivery.shutdown_grace = Duration::from_millis(50);
    })
    .await;
    let stalled = Receiver::start().await;
    stalled.always(Reply::status(200).after(Duration::from_secs(60)));
    let healthy = Receiver::start().await;
    let project = app.project("acme").await;
    for n in 0..8 {
        app.webhook(&project, &stalled.url(&format!("/{n}")), &[&format!("slow{n}.*")])
            .await;
    }
    app.webhook(&project, &healthy.url("/"), &["fast.*"]).await;
    for n in 0..8 {
        for _ in 0..30 {
            app.publish(&project, &format!("slow{n}.x"), json!({})).await;
        }
    }
    stalled.wait_for(16, Duration::from_secs(10)).await;
    for _ in 0..20 {
        app.publish(&project, "fast.x", json!({})).await;
    }
    healthy.wait_for(20, Duration::from_secs(20)).await;
    // Without adaptive caps the healthy endpoint waits for the whole stalled
    // backlog (240 requests); now only for the stalled ones' first timeouts.
    let stalled_requests = stalled.count();
    assert!(
        stalled_requests <= 64,
        "healthy deliveries waited for {stalled_requests} stalled requests"
    );
    app.running.unwrap().shutdown().await.unwrap();
}
