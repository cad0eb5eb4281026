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
        config.delivery.lease = Duration::from_secs(60);
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
    assert_eq!(event["deliveries"][0]["state"], "pending", "{event}");
    assert_eq!(app.deliver_due().await, 1, "released deliveries are due at once");
    assert_eq!(
        app.event(&project, &abandoned).await["deliveries"][0]["state"],
        "succeeded"
    );
}
