//! Delivery semantics: headers, signatures, exact bytes, retries.

use std::time::Duration;

use herald_signature::{HmacKey, TrustedKey, Verifier};
use serde_json::json;

use crate::support::{Receiver, Reply, START, TestApp};

#[tokio::test]
async fn an_event_is_delivered_signed_with_the_exact_published_bytes() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/hook"), &["batch.*"]).await;
    let secret = webhook["new_signing_secret"]
        .as_str()
        .expect("secret shown at creation");

    let event_id = app
        .publish(
            &project,
            "batch.succeeded",
            json!({ "id": "batch_123", "output_file_uri": "gs://x" }),
        )
        .await;
    assert_eq!(app.deliver_due().await, 1);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("webhook-id"), event_id);
    assert_eq!(request.header("webhook-timestamp"), START.as_unix_seconds().to_string());
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("herald/"));
    let body = request.json();
    assert_eq!(body["id"], event_id);
    assert_eq!(body["type"], "batch.succeeded");
    assert_eq!(body["version"], "v1");
    assert_eq!(body["data"]["id"], "batch_123");

    let key = HmacKey::parse(secret).expect("whsec_ secret");
    let verifier = Verifier::new(vec![TrustedKey::Hmac(key)]);
    verifier
        .verify_at(&request.headers, &request.body, START.as_unix_seconds())
        .expect("signature verifies over the exact bytes");

    let event = app.event(&project, &event_id).await;
    assert_eq!(event["deliveries"][0]["state"], "succeeded");
    assert_eq!(event["deliveries"][0]["attempt_count"], 1);
    assert_eq!(event["deliveries"][0]["last_attempt"]["status_code"], 204);
}

#[tokio::test]
async fn failures_retry_on_the_documented_schedule_then_fail() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(500).with_body("upstream broke"));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "video.generated", json!({ "id": "v1" })).await;

    assert_eq!(app.deliver_due().await, 1);
    let delays = [5, 300, 1800, 7200, 18000, 36000];
    for (index, delay) in delays.iter().enumerate() {
        // One second early: nothing is due yet.
        app.advance(Duration::from_secs(delay - 1));
        assert_eq!(app.deliver_due().await, 0, "retry {index} came early");
        app.advance(Duration::from_secs(1));
        assert_eq!(app.deliver_due().await, 1, "retry {index} did not come on time");
    }
    app.advance(Duration::from_secs(24 * 3600));
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(receiver.count(), 7);
    // Every attempt carries the same webhook-id and its own timestamp.
    let received = receiver.received();
    assert!(received.iter().all(|r| r.header("webhook-id") == event_id));
    let event = app.event(&project, &event_id).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["state"], "failed");
    assert_eq!(delivery["attempt_count"], 7);
    assert_eq!(delivery["last_attempt"]["status_code"], 500);
    assert_eq!(delivery["last_attempt"]["error_kind"], "http_status");
    assert_eq!(delivery["last_attempt"]["response_excerpt"], "upstream broke");
}

#[tokio::test]
async fn redirects_are_failures_and_are_never_followed() {
    let app = TestApp::spawn().await;
    let elsewhere = Receiver::start().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(302).with_header("location", elsewhere.url("/stolen")));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(elsewhere.count(), 0, "the redirect must not be followed");
    let event = app.event(&project, &event_id).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["state"], "pending");
    assert_eq!(delivery["last_attempt"]["status_code"], 302);
    assert_eq!(
        delivery["next_attempt_time"],
        START.saturating_add(Duration::from_secs(5)).to_rfc3339()
    );
}

#[tokio::test]
async fn gone_disables_the_webhook_and_stops_fan_out() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(410));
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let first = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);

    let event = app.event(&project, &first).await;
    assert_eq!(event["deliveries"][0]["state"], "failed");
    let (_, webhook) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap()),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(webhook["state"], "disabled");
    assert!(webhook["state_reason"].as_str().unwrap().contains("410"), "{webhook}");

    let second = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.event(&project, &second).await["deliveries"], json!([]));
    app.advance(Duration::from_secs(3600));
    assert_eq!(app.deliver_due().await, 0);
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429).with_header("retry-after", "120")]);
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    app.advance(Duration::from_secs(119));
    assert_eq!(app.deliver_due().await, 0, "retried before Retry-After");
    app.advance(Duration::from_secs(1));
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(
        app.event(&project, &event_id).await["deliveries"][0]["state"],
        "succeeded"
    );
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_recorded_by_kind() {
    let app = TestApp::spawn_with(|config| {
        config.delivery.timeout = Duration::from_millis(300);
        config.delivery.lease = Some(Duration::from_secs(10));
    })
    .await;
    let slow = Receiver::start().await;
    slow.always(Reply::status(200).after(Duration::from_secs(3)));
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let project = app.project("acme").await;
    app.webhook(&project, &slow.url("/"), &["slow.*"]).await;
    app.webhook(&project, &format!("http://127.0.0.1:{closed_port}/"), &["dead.*"])
        .await;
    let slow_event = app.publish(&project, "slow.x", json!({})).await;
    let dead_event = app.publish(&project, "dead.x", json!({})).await;
    assert_eq!(app.deliver_due().await, 2);
    let timed_out = &app.event(&project, &slow_event).await["deliveries"][0]["last_attempt"];
    assert_eq!(timed_out["error_kind"], "timeout", "{timed_out}");
    let refused = &app.event(&project, &dead_event).await["deliveries"][0]["last_attempt"];
    assert_eq!(refused["error_kind"], "connect", "{refused}");
    assert!(
        refused["error_message"]
            .as_str()
            .unwrap()
            .contains(&closed_port.to_string()),
        "{refused}"
    );
}

#[tokio::test]
async fn addresses_are_checked_again_at_connect_time() {
    // Created while loopback was allowed; the operator then removes the
    // allowance. The stored webhook must not reach loopback any more.
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    app.webhook(&project, &format!("http://localhost:{}/", receiver.addr.port()), &["*"])
        .await;
    let app = app
        .restart_with(|config| config.security.allow_target_cidrs.clear())
        .await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 2);
    assert_eq!(receiver.count(), 0);
    for delivery in app.event(&project, &event_id).await["deliveries"].as_array().unwrap() {
        assert_eq!(delivery["last_attempt"]["error_kind"], "ssrf_blocked", "{delivery}");
    }
}

#[tokio::test]
async fn fan_out_reaches_every_matching_webhook_with_one_webhook_id() {
    let app = TestApp::spawn().await;
    let (a, b, c) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let project = app.project("acme").await;
    app.webhook(&project, &a.url("/"), &["batch.succeeded"]).await;
    app.webhook(&project, &b.url("/"), &["batch.*"]).await;
    app.webhook(&project, &c.url("/"), &["video.*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({ "n": 1 })).await;
    assert_eq!(app.deliver_due().await, 2);
    assert_eq!((a.count(), b.count(), c.count()), (1, 1, 0));
    assert_eq!(a.received()[0].header("webhook-id"), event_id);
    assert_eq!(a.received()[0].body, b.received()[0].body);
}

#[tokio::test]
async fn ed25519_webhooks_verify_with_the_published_public_key() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let body = json!({ "uri": receiver.url("/"), "subscribed_events": ["*"], "signing": "ed25519" });
    let (status, webhook) = app
        .call(reqwest::Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, 201, "{webhook}");
    assert!(
        webhook.get("new_signing_secret").is_none(),
        "the secret key never leaves Herald"
    );
    let public_key = webhook["signing_secrets"][0]["public_key"].as_str().expect("whpk_ key");
    app.publish(&project, "batch.succeeded", json!({})).await;
    app.deliver_due().await;
    let request = &receiver.received()[0];
    assert!(request.header("webhook-signature").starts_with("v1a,"));
    let key = herald_signature::Ed25519PublicKey::parse(public_key).expect("whpk_");
    Verifier::new(vec![TrustedKey::Ed25519(key)])
        .verify_at(&request.headers, &request.body, START.as_unix_seconds())
        .expect("v1a verifies");
}

#[tokio::test]
async fn disabled_webhooks_hold_deliveries_until_enabled_and_deleted_ones_fail_them() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let held = app.webhook(&project, &receiver.url("/held"), &["*"]).await;
    let deleted = app.webhook(&project, &receiver.url("/deleted"), &["*"]).await;
    let path = |w: &serde_json::Value| format!("/v1/webhooks/{}", w["id"].as_str().unwrap());
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;

    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &path(&held),
            Some(&project.key),
            Some(json!({ "state": "disabled" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(reqwest::Method::DELETE, &path(&deleted), Some(&project.key), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.deliver_due().await, 0);
    let event = app.event(&project, &event_id).await;
    let state_of = |webhook: &serde_json::Value| {
        let deliveries = event["deliveries"].as_array().unwrap();
        deliveries.iter().find(|d| d["webhook_id"] == webhook["id"]).unwrap()["state"].clone()
    };
    assert_eq!(state_of(&held), "pending");
    assert_eq!(state_of(&deleted), "failed");

    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &path(&held),
            Some(&project.key),
            Some(json!({ "state": "enabled" })),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(receiver.received()[0].path, "/held");
}

#[tokio::test]
async fn a_success_whose_body_stalls_is_still_a_success() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|config| {
        config.delivery.timeout = Duration::from_millis(300);
        config.delivery.lease = Some(Duration::from_secs(10));
    })
    .await;
    // Answers 200 with 3 of the 10 body bytes it promised, then goes quiet.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                    .await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    let project = app.project("acme").await;
    app.webhook(&project, &format!("http://127.0.0.1:{port}/"), &["*"])
        .await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let delivery = &app.event(&project, &event_id).await["deliveries"][0];
    assert_eq!(delivery["state"], "succeeded", "{delivery}");
    assert_eq!(delivery["last_attempt"]["status_code"], 200);
    assert_eq!(delivery["last_attempt"]["response_excerpt"], "abc");
}

#[tokio::test]
async fn a_short_retry_after_does_not_use_up_the_attempts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(429).with_header("retry-after", "1"));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    for _ in 0..10 {
        app.advance(Duration::from_secs(1));
        app.deliver_due().await;
    }
    // Ten seconds of "retry in 1 s": the schedule (5 s, then 5 min) still rules.
    assert_eq!(receiver.count(), 2);
    assert_eq!(
        app.event(&project, &event_id).await["deliveries"][0]["state"],
        "pending"
    );
}

#[tokio::test]
async fn deliveries_held_past_the_retry_window_expire_instead_of_going_out() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let old = app.publish(&project, "batch.succeeded", json!({ "n": 1 })).await;
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&project.key),
            Some(json!({ "state": "disabled" })),
        )
        .await;
    assert_eq!(status, 200);
    app.advance(Duration::from_secs(25 * 3600));
    let (status, _) = app
        .call(
            reqwest::Method::PATCH,
            &path,
            Some(&project.key),
            Some(json!({ "state": "enabled" })),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = app.publish(&project, "batch.succeeded", json!({ "n": 2 })).await;
    assert_eq!(app.deliver_due().await, 1, "only the fresh event goes out");
    assert_eq!(receiver.received()[0].header("webhook-id"), fresh);
    let delivery = &app.event(&project, &old).await["deliveries"][0];
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert_eq!(delivery["last_error"], "expired");
    assert_eq!(delivery["attempt_count"], 0);
}
