//! The HTTP API: authentication, project isolation, resource lifecycles,
//! and clear 4xx answers to bad input.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Receiver, TestApp};

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

fn error_field(body: &Value) -> &str {
    body["error"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("the error names no field: {body}"))
}

#[tokio::test]
async fn requests_need_the_right_kind_of_key() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let cases: [(Method, &str, Option<&str>, u16, &str); 6] = [
        (Method::GET, "/v1/webhooks", None, 401, "unauthenticated"),
        (
            Method::GET,
            "/v1/webhooks",
            Some("hrk_not-a-real-key"),
            401,
            "unauthenticated",
        ),
        (Method::GET, "/v1/webhooks", Some(ADMIN_KEY), 403, "permission_denied"),
        (
            Method::GET,
            "/v1/projects",
            Some(&project.key),
            403,
            "permission_denied",
        ),
        (Method::GET, "/v1/projects", Some(ADMIN_KEY), 200, ""),
        (Method::GET, "/v1/webhooks", Some(&project.key), 200, ""),
    ];
    for (method, path, key, status, code) in cases {
        let (got, body) = app.call(method.clone(), path, key, None).await;
        assert_eq!(got.as_u16(), status, "{method} {path} with {key:?}: {body}");
        if !code.is_empty() {
            assert_eq!(error_code(&body), code);
        }
    }
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let (_, keys) = app
        .call(
            Method::GET,
            &format!("/v1/projects/{}/api_keys", project.id),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    let key_id = keys["api_keys"][0]["id"].as_str().unwrap().to_owned();
    assert!(keys["api_keys"][0].get("key").is_none(), "listings never show the key");
    assert_eq!(
        app.call(Method::GET, "/v1/webhooks", Some(&project.key), None).await.0,
        200
    );
    let path = format!("/v1/projects/{}/api_keys/{key_id}", project.id);
    assert_eq!(app.call(Method::DELETE, &path, Some(ADMIN_KEY), None).await.0, 204);
    assert_eq!(
        app.call(Method::GET, "/v1/webhooks", Some(&project.key), None).await.0,
        401
    );
    assert_eq!(app.call(Method::DELETE, &path, Some(ADMIN_KEY), None).await.0, 404);
}

#[tokio::test]
async fn projects_cannot_see_each_others_resources() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (a, b) = (app.project("a").await, app.project("b").await);
    let webhook = app.webhook(&a, &receiver.url("/"), &["*"]).await;
    let event_id = app.publish(&a, "batch.succeeded", json!({})).await;
    let webhook_path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let cases = [
        (Method::GET, webhook_path.clone(), None),
        (Method::PATCH, webhook_path.clone(), Some(json!({ "name": "mine now" }))),
        (Method::DELETE, webhook_path.clone(), None),
        (Method::GET, format!("/v1/events/{event_id}"), None),
    ];
    for (method, path, body) in cases {
        let (status, response) = app.call(method.clone(), &path, Some(&b.key), body).await;
        assert_eq!(status, 404, "{method} {path}: {response}");
        assert_eq!(error_code(&response), "not_found");
    }
    let (_, list) = app.call(Method::GET, "/v1/webhooks", Some(&b.key), None).await;
    assert_eq!(list["webhooks"], json!([]));
    // B's events do not reach A's webhook.
    app.publish(&b, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    assert_eq!(app.call(Method::GET, &webhook_path, Some(&a.key), None).await.0, 200);
}

#[tokio::test]
async fn webhook_lifecycle_and_secret_visibility() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let created = app.webhook(&project, &receiver.url("/a"), &["batch.*"]).await;
    let secret = created["new_signing_secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["state"], "enabled");
    assert_eq!(created["signing"], "hmac");
    let truncated = created["signing_secrets"][0]["truncated_secret"].as_str().unwrap();
    assert!(secret.starts_with(truncated.trim_end_matches('…')) && truncated.len() < secret.len());

    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    let (_, fetched) = app.call(Method::GET, &path, Some(&project.key), None).await;
    assert!(
        fetched.get("new_signing_secret").is_none(),
        "the secret is shown only at creation"
    );
    assert_eq!(fetched["uri"], receiver.url("/a"));

    let patch = json!({ "name": "renamed", "uri": receiver.url("/b"), "subscribed_events": ["*"] });
    let (status, updated) = app.call(Method::PATCH, &path, Some(&project.key), Some(patch)).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["name"].as_str(), updated["uri"].as_str()),
        (Some("renamed"), Some(receiver.url("/b").as_str()))
    );
    assert_eq!(updated["subscribed_events"], json!(["*"]));

    // With update_mask only the named fields change.
    let masked = format!("{path}?update_mask=state");
    let (status, updated) = app
        .call(
            Method::PATCH,
            &masked,
            Some(&project.key),
            Some(json!({ "state": "disabled", "name": "ignored" })),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (updated["state"].as_str(), updated["name"].as_str()),
        (Some("disabled"), Some("renamed"))
    );

    assert_eq!(app.call(Method::DELETE, &path, Some(&project.key), None).await.0, 200);
    assert_eq!(app.call(Method::GET, &path, Some(&project.key), None).await.0, 404);
}

#[tokio::test]
async fn listings_are_paginated() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let mut created = Vec::new();
    for n in 0..5 {
        created.push(app.webhook(&project, &receiver.url(&format!("/{n}")), &["*"]).await["id"].clone());
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = app
            .call(
                Method::GET,
                &format!("/v1/webhooks?page_size=2&page_token={token}"),
                Some(&project.key),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["webhooks"].as_array().unwrap().iter().map(|w| w["id"].clone()));
        match page["next_page_token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    created.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(seen, created);
    for bad in [
        "page_size=0",
        "page_size=101",
        "page_size=x",
        "page_token=%%%",
        "colour=blue",
    ] {
        let (status, body) = app
            .call(Method::GET, &format!("/v1/webhooks?{bad}"), Some(&project.key), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!error_field(&body).is_empty());
    }
}

#[tokio::test]
async fn hostile_webhook_uris_are_rejected_at_create_time() {
    let app = TestApp::spawn_with(|config| config.security.allow_target_cidrs.clear()).await;
    let project = app.project("acme").await;
    for uri in [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[fd00::1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://localhost:9000/",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pass@example.com/",
        "not a uri",
    ] {
        let body = json!({ "uri": uri, "subscribed_events": ["*"] });
        let (status, response) = app
            .call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
            .await;
        assert_eq!(status, 400, "{uri}: {response}");
        assert_eq!(error_field(&response), "uri", "{uri}");
    }
    let body = json!({ "uri": "https://hooks.example.com/herald", "subscribed_events": ["*"] });
    assert_eq!(
        app.call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
            .await
            .0,
        201
    );
}

#[tokio::test]
async fn bad_input_gets_a_4xx_that_names_the_problem() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_request_bytes = 64 * 1024;
        config.limits.max_payload_bytes = 16 * 1024;
    })
    .await;
    let project = app.project("acme").await;
    let key = project.key.as_str();
    let json_cases: [(&str, Value, &str, Option<&str>); 9] = [
        (
            "/v1/webhooks",
            json!({ "uri": 5, "subscribed_events": ["*"] }),
            "invalid_argument",
            Some("uri"),
        ),
        (
            "/v1/webhooks",
            json!({ "uri": "https://x.example", "subscribed_events": "*" }),
            "invalid_argument",
            Some("subscribed_events"),
        ),
        (
            "/v1/webhooks",
            json!({ "uri": "https://x.example", "subscribed_events": [] }),
            "invalid_argument",
            Some("subscribed_events"),
        ),
        (
            "/v1/webhooks",
            json!({ "uri": "https://x.example", "subscribed_events": ["a b"] }),
            "invalid_argument",
            Some("subscribed_events"),
        ),
        (
            "/v1/webhooks",
            json!({ "uri": "https://x.example", "subscribed_events": ["*"], "signing": "rsa" }),
            "invalid_argument",
            Some("signing"),
        ),
        (
            "/v1/webhooks",
            json!({ "uri": "https://x.example", "subscribed_events": ["*"], "colour": 1 }),
            "invalid_argument",
            Some("colour"),
        ),
        (
            "/v1/events",
            json!({ "type": "batch.done", "data": [1, 2] }),
            "invalid_argument",
            Some("data"),
        ),
        (
            "/v1/events",
            json!({ "type": "no spaces", "data": {} }),
            "invalid_argument",
            Some("type"),
        ),
        ("/v1/events", json!({ "data": {} }), "invalid_argument", Some("type")),
    ];
    for (path, body, code, field) in json_cases {
        let (status, response) = app.call(Method::POST, path, Some(key), Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {response}");
        assert_eq!(error_code(&response), code, "{body}");
        assert_eq!(response["error"]["field"].as_str(), field, "{body}: {response}");
    }
    let (status, response) = app
        .call_raw(
            Method::POST,
            "/v1/events",
            key,
            "application/json",
            b"{\"type\": ".to_vec(),
        )
        .await;
    assert_eq!((status.as_u16(), error_code(&response)), (400, "invalid_json"));
    let (status, response) = app
        .call_raw(Method::POST, "/v1/events", key, "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(
        (status.as_u16(), error_code(&response)),
        (415, "unsupported_media_type")
    );
    let huge = format!("{{\"type\":\"a\",\"data\":{{\"x\":\"{}\"}}}}", "y".repeat(100 * 1024));
    let (status, response) = app
        .call_raw(Method::POST, "/v1/events", key, "application/json", huge.into_bytes())
        .await;
    assert_eq!((status.as_u16(), error_code(&response)), (413, "payload_too_large"));

    let big = json!({ "type": "a", "data": { "x": "y".repeat(20 * 1024) } });
    let (status, response) = app.call(Method::POST, "/v1/events", Some(key), Some(big)).await;
    assert_eq!((status.as_u16(), error_field(&response)), (400, "data"));

    let batch = json!({ "events": [{ "type": "ok", "data": {} }, { "type": "", "data": {} }] });
    let (status, response) = app
        .call(Method::POST, "/v1/events:batchCreate", Some(key), Some(batch))
        .await;
    assert_eq!((status.as_u16(), error_field(&response)), (400, "events[1].type"));
    let (status, response) = app
        .call(
            Method::POST,
            "/v1/events:batchCreate",
            Some(key),
            Some(json!({ "events": [] })),
        )
        .await;
    assert_eq!((status.as_u16(), error_field(&response)), (400, "events"));

    for (method, path) in [
        (Method::GET, "/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        (Method::GET, "/v1/events/not-an-id"),
        (Method::GET, "/v1/webhooks/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        (Method::GET, "/v2/nothing"),
    ] {
        let (status, response) = app.call(method, path, Some(key), None).await;
        assert_eq!((status.as_u16(), error_code(&response)), (404, "not_found"), "{path}");
    }
    let (status, response) = app.call(Method::PUT, "/v1/webhooks", Some(key), None).await;
    assert_eq!((status.as_u16(), error_code(&response)), (405, "method_not_allowed"));
    // Nothing above created anything.
    let (_, list) = app.call(Method::GET, "/v1/webhooks", Some(key), None).await;
    assert_eq!(list["webhooks"], json!([]));
}

#[tokio::test]
async fn idempotency_keys_replay_or_conflict() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let send = |key: &'static str, body: &'static str| {
        app.http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(&project.key)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let first = send("order-1", r#"{"type":"batch.succeeded","data":{"n":1}}"#)
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send("order-1", r#"{"type":"batch.succeeded","data":{"n":1}}"#)
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let conflict = send("order-1", r#"{"type":"batch.succeeded","data":{"n":2}}"#)
        .await
        .unwrap();
    assert_eq!(conflict.status(), 409);
    let bad = send("has space", r#"{"type":"batch.succeeded","data":{"n":2}}"#)
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(app.deliver_due().await, 1, "one event, one delivery");
}

#[tokio::test]
async fn batch_create_publishes_all_and_events_read_back_exactly() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    let events: Vec<Value> = (0..10)
        .map(|n| json!({ "type": "batch.succeeded", "data": { "n": n } }))
        .collect();
    let (status, accepted) = app
        .call(
            Method::POST,
            "/v1/events:batchCreate",
            Some(&project.key),
            Some(json!({ "events": events })),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let ids: Vec<&str> = accepted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(app.deliver_due().await, 10);
    // `data` keeps the producer's exact bytes (spacing and key order included).
    let raw = r#"{"type":"video.generated","data":{ "z": 1,  "a": [true, null] }}"#;
    let (status, accepted) = app
        .call_raw(
            Method::POST,
            "/v1/events",
            &project.key,
            "application/json",
            raw.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(status, 202);
    app.deliver_due().await;
    let delivered = receiver.received().pop().unwrap();
    let body = String::from_utf8(delivered.body.to_vec()).unwrap();
    assert!(body.ends_with(r#""data":{ "z": 1,  "a": [true, null] }}"#), "{body}");
    let event = app.event(&project, accepted["id"].as_str().unwrap()).await;
    assert_eq!(event["data"], json!({ "z": 1, "a": [true, null] }));
    assert_eq!(event["type"], "video.generated");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["*"]).await;
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.call(Method::GET, "/healthz", None, None).await.0, 200);
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.0, 200);
    let metrics = app.metrics().await;
    assert!(metrics.contains("herald_deliveries_pending 1"), "{metrics}");
    app.deliver_due().await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("herald_deliveries_pending 0"), "{metrics}");
    assert!(
        metrics.contains("herald_delivery_attempts_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_delivery_attempt_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herald_oldest_due_delivery_age_seconds 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn idempotency_keys_expire_after_a_day() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let send = |body: &'static str| {
        app.http
            .post(format!("{}/v1/events", app.base))
            .bearer_auth(&project.key)
            .header("content-type", "application/json")
            .header("idempotency-key", "nightly-run")
            .body(body)
            .send()
    };
    assert_eq!(send(r#"{"type":"a","data":{"n":1}}"#).await.unwrap().status(), 202);
    assert_eq!(send(r#"{"type":"a","data":{"n":2}}"#).await.unwrap().status(), 409);
    let store = app.running().store.as_ref();
    app.advance(std::time::Duration::from_secs(23 * 3600));
    assert_eq!(
        herald::maintenance::run_once(store, &(app.clock.clone() as herald::clock::SharedClock))
            .await
            .unwrap(),
        0
    );
    app.advance(std::time::Duration::from_secs(3600 + 1));
    assert_eq!(
        herald::maintenance::run_once(store, &(app.clock.clone() as herald::clock::SharedClock))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        send(r#"{"type":"a","data":{"n":2}}"#).await.unwrap().status(),
        202,
        "the key is free again"
    );
}

#[tokio::test]
async fn deleting_a_webhook_deletes_its_secrets_and_sqlite_files_are_private() {
    let app = crate::support::TestApp::spawn().await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, "http://127.0.0.1:9/", &["*"]).await;
    let id = webhook["id"].as_str().unwrap().to_owned();
    let secrets = format!("SELECT COUNT(*) FROM webhook_secrets WHERE webhook_id = '{id}'");
    assert_eq!(app.query_count(&secrets).await, 1);
    let (status, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            Some(&project.key),
            None,
        )
        .await;
    assert!(status.is_success());
    assert_eq!(
        app.query_count(&secrets).await,
        0,
        "a deleted webhook's secret is gone from the database"
    );

    if app.config.storage.database_url.is_none() {
        use std::os::unix::fs::PermissionsExt;
        let dir = app.data_dir.path();
        for file in ["herald.db", "herald.db-wal", "herald.db-shm"] {
            let mode = std::fs::metadata(dir.join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file} holds secrets: owner only");
        }
        // A data directory Herald creates itself is private too.
        let fresh = dir.join("fresh");
        let options = herald::store::sqlite::SqliteOptions {
            data_dir: fresh.clone(),
            ..Default::default()
        };
        let store = herald::store::open(
            &herald::store::StorageConfig::Sqlite(options),
            app.clock.clone() as herald::clock::SharedClock,
        )
        .await
        .unwrap();
        store.close().await;
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
