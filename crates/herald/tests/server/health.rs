//! Endpoint health: auto-disable, re-enabling, and the operational events
//! (`webhook.disabled`, `delivery.exhausted`, `delivery.recovered`) that
//! go through the ordinary pipeline to the webhooks that name them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Project, Receiver, Reply, TestApp};

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// Auto-disable after an hour and three failures; a run of two failures
/// is worth a `delivery.recovered`; retries every ten minutes.
async fn health_app() -> TestApp {
    TestApp::spawn_with(|config| {
        config.health.disable_after = Duration::from_secs(3600);
        config.health.disable_after_failures = 3;
        config.health.recovered_after_failures = 2;
        config.delivery.retry_schedule = vec![TEN_MINUTES; 10];
    })
    .await
}

async fn webhook_state(app: &TestApp, project: &Project, id: &str) -> Value {
    let (status, webhook) = app
        .call(Method::GET, &format!("/v1/webhooks/{id}"), Some(&project.key), None)
        .await;
    assert_eq!(status, 200, "{webhook}");
    webhook
}

async fn failures_counted(app: &TestApp, id: &str) -> i64 {
    app.query_count(&format!(
        "SELECT CAST(consecutive_failures AS BIGINT) FROM webhooks WHERE id = '{id}'"
    ))
    .await
}

fn types(received: &[crate::support::receiver::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_dead_webhook_is_disabled_once_both_limits_pass_announced_to_others_and_resumed_when_re_enabled() {
    let app = health_app().await;
    let dead = Receiver::start().await;
    dead.always(Reply::status(500));
    let ops = Receiver::start().await;
    let project = app.project("acme").await;
    let dead_hook = app
        .webhook(&project, &dead.url("/dead"), &["batch.*", "webhook.disabled"])
        .await;
    let dead_id = dead_hook["id"].as_str().unwrap().to_owned();
    app.webhook(&project, &ops.url("/ops"), &["webhook.*", "delivery.exhausted"])
        .await;

    let event = app.publish(&project, "batch.succeeded", json!({ "id": "b1" })).await;
    assert_eq!(app.deliver_due().await, 1);
    // Three failures within twenty minutes: the count is reached, the
    // period is not (an evening's outage is not a dead endpoint).
    for _ in 0..2 {
        app.advance(TEN_MINUTES);
        assert_eq!(app.deliver_due().await, 1);
    }
    assert_eq!(failures_counted(&app, &dead_id).await, 3);
    assert_eq!(webhook_state(&app, &project, &dead_id).await["state"], "enabled");
    assert!(ops.received().is_empty(), "nothing to announce yet");

    // A manual attempt does not count.
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/v1/webhooks/{dead_id}:ping"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(failures_counted(&app, &dead_id).await, 3);

    // An hour after the first failure, the next failure disables it, and
    // its announcement goes out at once.
    app.advance(Duration::from_secs(40 * 60));
    assert_eq!(app.deliver_due().await, 2);
    let webhook = webhook_state(&app, &project, &dead_id).await;
    assert_eq!(webhook["state"], "disabled_due_to_failed_deliveries", "{webhook}");
    assert!(
        webhook["state_reason"]
            .as_str()
            .unwrap()
            .contains("4 failed attempts in a row"),
        "{webhook}"
    );

    // The announcement reached the subscribed webhook, never the one it is about.
    let announced = ops.received();
    assert_eq!(types(&announced), ["webhook.disabled"]);
    let data = &announced[0].json()["data"];
    assert_eq!(data["webhook_id"], dead_id.as_str());
    assert_eq!(data["reason"], "failed_deliveries");
    assert_eq!(data["consecutive_failures"], 4);
    assert!(data["failing_since"].as_str().is_some(), "{data}");
    let dead_types = types(&dead.received());
    assert_eq!(dead_types.iter().filter(|t| *t == "batch.succeeded").count(), 4);
    assert!(!dead_types.iter().any(|t| t == "webhook.disabled"), "{dead_types:?}");

    // Disabled: no attempts, no new deliveries.
    app.publish(&project, "batch.failed", json!({ "id": "b2" })).await;
    app.advance(TEN_MINUTES);
    assert_eq!(app.deliver_due().await, 0);

    // Re-enabled: counters start afresh and the held delivery resumes.
    dead.always(Reply::status(204));
    let (status, updated) = app
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{dead_id}"),
            Some(&project.key),
            Some(json!({ "state": "enabled" })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(failures_counted(&app, &dead_id).await, 0);
    assert_eq!(app.deliver_due().await, 1);
    let after = app.event(&project, &event).await;
    assert_eq!(after["deliveries"][0]["state"], "succeeded", "{after}");
    assert_eq!(ops.count(), 1, "no recovery is announced after a reset");
}

#[tokio::test]
async fn the_first_success_after_a_run_of_failures_is_announced() {
    let app = health_app().await;
    let flaky = Receiver::start().await;
    flaky.script([Reply::status(503), Reply::status(500), Reply::status(200)]);
    let ops = Receiver::start().await;
    let project = app.project("acme").await;
    let flaky_hook = app.webhook(&project, &flaky.url("/"), &["batch.*"]).await;
    let flaky_id = flaky_hook["id"].as_str().unwrap().to_owned();
    app.webhook(&project, &ops.url("/ops"), &["delivery.recovered"]).await;

    app.publish(&project, "batch.succeeded", json!({ "id": "b1" })).await;
    app.deliver_due().await;
    app.advance(TEN_MINUTES);
    app.deliver_due().await;
    assert_eq!(failures_counted(&app, &flaky_id).await, 2);
    app.advance(TEN_MINUTES);
    assert_eq!(app.deliver_due().await, 2, "the success, then its announcement");
    assert_eq!(failures_counted(&app, &flaky_id).await, 0);
    let announced = ops.received();
    assert_eq!(types(&announced), ["delivery.recovered"]);
    let data = &announced[0].json()["data"];
    assert_eq!(data["webhook_id"], flaky_id.as_str());
    assert_eq!(data["failed_attempts"], 2);
    assert!(data["delivery_id"].as_str().unwrap().starts_with("dlv_"));

    // A single failure then a success is not worth announcing.
    flaky.script([Reply::status(500), Reply::status(200)]);
    app.publish(&project, "batch.succeeded", json!({ "id": "b2" })).await;
    app.deliver_due().await;
    app.advance(TEN_MINUTES);
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(ops.count(), 1);
}

#[tokio::test]
async fn an_exhausted_delivery_is_announced_to_named_subscribers_only() {
    let app = TestApp::spawn_with(|config| {
        config.delivery.retry_schedule = vec![Duration::from_secs(60)];
    })
    .await;
    let dead = Receiver::start().await;
    dead.always(Reply::status(500));
    let ops = Receiver::start().await;
    let everything = Receiver::start().await;
    let project = app.project("acme").await;
    let dead_hook = app.webhook(&project, &dead.url("/"), &["batch.*"]).await;
    app.webhook(&project, &ops.url("/"), &["delivery.*"]).await;
    app.webhook(&project, &everything.url("/"), &["*"]).await;

    let event = app.publish(&project, "batch.succeeded", json!({ "id": "b1" })).await;
    assert_eq!(app.deliver_due().await, 2, "dead fails, `*` succeeds");
    app.advance(Duration::from_secs(60));
    assert_eq!(app.deliver_due().await, 2, "dead fails for good, then the announcement");
    let announced = ops.received();
    assert_eq!(types(&announced), ["delivery.exhausted"]);
    let data = &announced[0].json()["data"];
    assert_eq!(data["webhook_id"], dead_hook["id"]);
    assert_eq!(data["event_id"], event.as_str());
    assert_eq!(data["event_type"], "batch.succeeded");
    assert_eq!(data["attempt_count"], 2);
    assert_eq!(data["last_error"], "http_status");
    // `*` means every producer event, not Herald's own.
    assert_eq!(types(&everything.received()), ["batch.succeeded"]);

    // The namespaces are Herald's: producers cannot publish into them.
    for reserved in ["delivery.exhausted", "webhook.disabled"] {
        let (status, body) = app
            .call(
                Method::POST,
                "/v1/events",
                Some(&project.key),
                Some(json!({ "type": reserved, "data": {} })),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["field"], "type", "{body}");
    }
}
