//! The delivery log, redelivery, ping, and what Google's clients need
//! (`x-goog-api-key`, `DELETE` answering `200 {}`).

use std::time::Duration;

use herald_signature::{HmacKey, TrustedKey, Verifier};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, START, TestApp};

/// Runs the whole retry schedule: the delivery ends `failed` after 7 attempts.
async fn exhaust(app: &TestApp) {
    assert_eq!(app.deliver_due().await, 1);
    for delay in [5, 300, 1800, 7200, 18000, 36000] {
        app.advance(Duration::from_secs(delay));
        assert_eq!(app.deliver_due().await, 1);
    }
}

async fn delivery(app: &TestApp, key: &str, id: &str) -> Value {
    let (status, body) = app
        .call(Method::GET, &format!("/v1/deliveries/{id}"), Some(key), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn the_log_lists_and_shows_every_attempt_and_a_redelivery_revives_a_failed_delivery() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500).with_body("upstream broke"));
    let project = app.project("acme").await;
    let other = app.project("other").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let webhook_id = webhook["id"].as_str().expect("id");
    let event_id = app.publish(&project, "batch.succeeded", json!({ "id": "b1" })).await;
    exhaust(&app).await;

    let (status, list) = app
        .call(
            Method::GET,
            &format!("/v1/deliveries?state=failed&webhook_id={webhook_id}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let listed = list["deliveries"].as_array().expect("deliveries");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["event_id"], event_id.as_str());
    assert_eq!(listed[0]["event_type"], "batch.succeeded");
    let id = listed[0]["id"].as_str().expect("id").to_owned();
    let (_, none) = app
        .call(Method::GET, "/v1/deliveries?state=pending", Some(&project.key), None)
        .await;
    assert_eq!(none["deliveries"], json!([]));

    let detail = delivery(&app, &project.key, &id).await;
    assert_eq!(detail["state"], "failed");
    assert_eq!(detail["attempt_count"], 7);
    assert_eq!(detail["last_error"], "http_status");
    let attempts = detail["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 7);
    assert_eq!(attempts[0]["attempt_number"], 1);
    assert_eq!(attempts[0]["start_time"], START.to_rfc3339());
    assert_eq!(attempts[6]["status_code"], 500);
    assert_eq!(attempts[6]["response_excerpt"], "upstream broke");
    assert_eq!(attempts[6]["error_kind"], "http_status");

    // Another project sees nothing.
    let path = format!("/v1/deliveries/{id}");
    assert_eq!(app.call(Method::GET, &path, Some(&other.key), None).await.0, 404);
    let redeliver = format!("/v1/deliveries/{id}:redeliver");
    assert_eq!(app.call(Method::POST, &redeliver, Some(&other.key), None).await.0, 404);
    let (_, theirs) = app.call(Method::GET, "/v1/deliveries", Some(&other.key), None).await;
    assert_eq!(theirs["deliveries"], json!([]));

    receiver.always(Reply::status(200));
    let (status, outcome) = app.call(Method::POST, &redeliver, Some(&project.key), None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["attempt"]["attempt_number"], 8);
    assert_eq!(outcome["attempt"]["status_code"], 200);
    assert!(outcome["attempt"]["error_kind"].is_null());
    let received = receiver.received();
    assert_eq!(received.len(), 8);
    assert_eq!(
        received[7].header("webhook-id"),
        event_id,
        "the same event, the same bytes"
    );
    assert_eq!(received[7].body, received[0].body);

    let detail = delivery(&app, &project.key, &id).await;
    assert_eq!(
        detail["state"], "succeeded",
        "a successful redelivery ends a failed delivery"
    );
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(8));
    assert!(detail["last_error"].is_null());
    app.advance(Duration::from_secs(86_400));
    assert_eq!(app.deliver_due().await, 0, "never retried automatically");
}

#[tokio::test]
async fn a_redelivery_of_a_pending_delivery_keeps_its_schedule() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(503));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let (_, list) = app.call(Method::GET, "/v1/deliveries", Some(&project.key), None).await;
    let id = list["deliveries"][0]["id"].as_str().expect("id").to_owned();
    let due = START.saturating_add(Duration::from_secs(5)).to_rfc3339();
    assert_eq!(list["deliveries"][0]["next_attempt_time"], due.as_str());

    app.advance(Duration::from_secs(1));
    let (status, outcome) = app
        .call(
            Method::POST,
            &format!("/v1/deliveries/{id}:redeliver"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["attempt"]["attempt_number"], 2);
    assert_eq!(outcome["attempt"]["status_code"], 503);
    assert_eq!(outcome["attempt"]["error_kind"], "http_status");
    let detail = delivery(&app, &project.key, &id).await;
    assert_eq!(detail["state"], "pending");
    assert_eq!(detail["next_attempt_time"], due.as_str(), "the schedule is unchanged");
    assert_eq!(detail["attempts"].as_array().map(Vec::len), Some(2));

    app.advance(Duration::from_secs(3));
    assert_eq!(app.deliver_due().await, 0, "not early");
    app.advance(Duration::from_secs(1));
    assert_eq!(app.deliver_due().await, 1, "the scheduled retry comes on time");
    assert_eq!(receiver.count(), 3);
}

#[tokio::test]
async fn ping_sends_a_signed_webhook_ping_now_and_answers_its_outcome() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).with_body("pong"));
    let project = app.project("acme").await;
    let other = app.project("other").await;
    let webhook = app.webhook(&project, &receiver.url("/hook"), &["batch.*"]).await;
    let webhook_id = webhook["id"].as_str().expect("id");
    let secret = webhook["new_signing_secret"].as_str().expect("secret");
    let ping = format!("/v1/webhooks/{webhook_id}:ping");

    // As google-genai sends it: no body, Content-Length: 0, x-goog-api-key.
    let response = reqwest::Client::new()
        .post(format!("http://{}{ping}", app.running().addr))
        .header("x-goog-api-key", &project.key)
        .header("content-length", "0")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("application/json")
    );
    let outcome: Value = response.json().await.expect("json");
    assert_eq!(outcome["attempt"]["status_code"], 200);
    assert_eq!(outcome["attempt"]["response_excerpt"], "pong");
    assert!(outcome["attempt"]["duration_ms"].is_number());

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let body = received[0].json();
    assert_eq!(body["type"], "webhook.ping");
    assert_eq!(body["data"]["webhook_id"], webhook_id);
    assert_eq!(
        received[0].header("webhook-id"),
        outcome["event_id"].as_str().unwrap_or_default()
    );
    Verifier::new(vec![TrustedKey::Hmac(HmacKey::parse(secret).expect("whsec_"))])
        .verify_at(&received[0].headers, &received[0].body, START.as_unix_seconds())
        .expect("signed like any delivery");

    let delivery_id = outcome["delivery_id"].as_str().expect("delivery id");
    let detail = delivery(&app, &project.key, delivery_id).await;
    assert_eq!(
        (detail["state"].as_str(), detail["event_type"].as_str()),
        (Some("succeeded"), Some("webhook.ping"))
    );

    receiver.always(Reply::status(500));
    let (status, failed) = app.call(Method::POST, &ping, Some(&project.key), None).await;
    assert_eq!(status, 200, "the ping was made; its outcome is in the body");
    assert_eq!(failed["attempt"]["error_kind"], "http_status");
    app.advance(Duration::from_secs(86_400));
    assert_eq!(app.deliver_due().await, 0, "a ping is never retried");
    assert_eq!(app.call(Method::POST, &ping, Some(&other.key), None).await.0, 404);

    // The id routes still work beside the custom method.
    let path = format!("/v1/webhooks/{webhook_id}");
    assert_eq!(app.call(Method::GET, &path, Some(&project.key), None).await.0, 200);
    let (status, _) = app
        .call(
            Method::PATCH,
            &path,
            Some(&project.key),
            Some(json!({ "name": "renamed" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = app.call(Method::DELETE, &path, Some(&project.key), None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})), "DELETE answers 200 {{}}");
}

#[tokio::test]
async fn the_api_key_may_come_in_x_goog_api_key() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/v1/webhooks", app.running().addr);
    let response = client
        .get(&url)
        .header("x-goog-api-key", &project.key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let response = client
        .get(&url)
        .header("x-goog-api-key", "hrk_wrong")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(&url)
        .header("x-goog-api-key", &project.key)
        .bearer_auth(&project.key)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "one header, not both");
}
