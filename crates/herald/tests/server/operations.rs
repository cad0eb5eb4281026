//! `/v1/operations` over HTTP: the `google.longrunning.Operation` shape,
//! every transition legal or refused (409 naming the state), idempotent
//! transitions, events delivered in sequence, `:wait` (on completion, on
//! timeout, on another node's change), expiry and stalled workers with the
//! manual clock.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::backend::{Backend, backend};
use crate::support::{Project, Receiver, Reply, TestApp};

async fn create(app: &TestApp, project: &Project, body: Value) -> Value {
    let (status, operation) = app
        .call(Method::POST, "/v1/operations", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{operation}");
    operation
}

async fn verb(app: &TestApp, project: &Project, id: &str, verb: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/v1/operations/{id}:{verb}"),
        Some(&project.key),
        body,
    )
    .await
}

async fn ok(app: &TestApp, project: &Project, id: &str, name: &str, body: Option<Value>) -> Value {
    let (status, operation) = verb(app, project, id, name, body).await;
    assert_eq!(status, StatusCode::OK, ":{name} {operation}");
    operation
}

fn id_of(operation: &Value) -> String {
    operation["id"].as_str().expect("id").to_owned()
}

/// Drives a fresh operation to `state` over HTTP; returns its id.
async fn operation_in(app: &TestApp, project: &Project, state: &str) -> String {
    let id = id_of(&create(app, project, json!({ "kind": "video.generate", "expire_after": "1h" })).await);
    let start = json!({ "worker": "w1" });
    let path: &[(&str, Option<Value>)] = match state {
        "pending" => &[],
        "running" => &[("start", Some(start))],
        "requires_action" => &[
            ("start", Some(start)),
            ("requireAction", Some(json!({ "action": { "confirm": true } }))),
        ],
        "cancelling" => &[("start", Some(start)), ("cancel", None)],
        "succeeded" => &[
            ("start", Some(start)),
            ("complete", Some(json!({ "response": { "uri": "gs://x" } }))),
        ],
        "failed" => &[
            ("start", Some(start)),
            ("fail", Some(json!({ "error": { "code": 13, "message": "boom" } }))),
        ],
        "cancelled" => &[("cancel", None)],
        other => panic!("unknown state {other}"),
    };
    for (name, body) in path {
        ok(app, project, &id, name, body.clone()).await;
    }
    id
}

async fn sweep(app: &TestApp) -> u64 {
    let clock: herald::clock::SharedClock = app.clock.clone();
    herald::operation_sweep::run_once(app.running().store.as_ref(), &clock)
        .await
        .expect("sweep")
}

#[tokio::test]
async fn a_lifecycle_has_the_long_running_operation_shape_and_delivers_its_events_in_sequence() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["operation.*"]).await;

    let created = create(
        &app,
        &project,
        json!({ "kind": "research", "metadata": { "topic": "tides" }, "progress_events": true }),
    )
    .await;
    let id = id_of(&created);
    assert!(id.starts_with("op_"));
    assert_eq!(created["name"], format!("operations/{id}"));
    assert_eq!(created["done"], false);
    assert_eq!(created["metadata"]["state"], "pending");
    assert_eq!(created["metadata"]["kind"], "research");
    assert_eq!(created["metadata"]["client_metadata"]["topic"], "tides");
    assert_eq!(
        created["metadata"]["expire_time"], "2026-01-02T00:00:00.000Z",
        "24 h by default"
    );
    assert!(created.get("response").is_none() && created.get("error").is_none());

    let running = ok(
        &app,
        &project,
        &id,
        "start",
        Some(json!({ "worker": "w1", "lease_duration": "30s" })),
    )
    .await;
    assert_eq!(running["metadata"]["state"], "running");
    assert_eq!(running["metadata"]["worker"], "w1");
    assert_eq!(running["metadata"]["lease_expire_time"], "2026-01-01T00:00:30.000Z");
    let progress = ok(
        &app,
        &project,
        &id,
        "progress",
        Some(json!({ "worker": "w1", "percent": 42.5, "message": "reading" })),
    )
    .await;
    assert_eq!(
        progress["metadata"]["progress"],
        json!({ "percent": 42.5, "message": "reading" })
    );
    let waiting = ok(
        &app,
        &project,
        &id,
        "requireAction",
        Some(json!({ "action": { "approve": "budget" } })),
    )
    .await;
    assert_eq!(waiting["metadata"]["action"]["approve"], "budget");
    ok(&app, &project, &id, "resume", None).await;
    let done = ok(
        &app,
        &project,
        &id,
        "complete",
        Some(json!({ "worker": "w1", "response": { "report": "gs://r.pdf" } })),
    )
    .await;
    assert_eq!(done["done"], true);
    assert_eq!(done["response"]["report"], "gs://r.pdf");
    assert_eq!(done["metadata"]["state"], "succeeded");
    let (status, fetched) = app
        .call(Method::GET, &format!("/v1/operations/{id}"), Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, done);

    assert_eq!(app.deliver_due().await, 5);
    let mut events: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    events.sort_by_key(|e| e["data"]["sequence"].as_u64());
    let seen: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"]["state"].as_str().unwrap().to_owned(),
                e["data"]["sequence"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("operation.running", "running", 1),
        ("operation.progress", "running", 2),
        ("operation.requires_action", "requires_action", 3),
        ("operation.running", "running", 4),
        ("operation.succeeded", "succeeded", 5),
    ];
    let expected: Vec<(String, String, u64)> = expected
        .iter()
        .map(|(t, s, n)| ((*t).to_owned(), (*s).to_owned(), *n))
        .collect();
    assert_eq!(seen, expected);
    for event in &events {
        assert_eq!(event["data"]["id"], id);
        assert_eq!(event["data"]["kind"], "research");
        assert!(event["data"].get("response").is_none(), "thin payloads");
    }

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/operations/{id}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::GET, &format!("/v1/operations/{id}"), Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_verb_in_every_state_is_applied_or_refused_with_409_naming_the_state() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    // (state, verb) → the state after, or None for 409.
    let expected = |state: &str, verb: &str| -> Option<&'static str> {
        Some(match (state, verb) {
            ("pending", "start") => "running",
            ("pending", "cancel") => "cancelled",
            ("running", "start") => "running",
            ("running", "heartbeat") => "running",
            ("running", "progress") => "running",
            ("running", "requireAction") => "requires_action",
            ("running", "complete") => "succeeded",
            ("running", "fail") => "failed",
            ("running", "cancel") => "cancelling",
            ("requires_action", "heartbeat") => "requires_action",
            ("requires_action", "resume") => "running",
            ("requires_action", "fail") => "failed",
            ("requires_action", "cancel") => "cancelling",
            ("cancelling", "heartbeat") => "cancelling",
            ("cancelling", "progress") => "cancelling",
            ("cancelling", "complete") => "succeeded",
            ("cancelling", "fail") => "cancelled",
            ("cancelling", "cancel") => "cancelling",
            _ => return None,
        })
    };
    let verbs: [(&str, Option<Value>); 8] = [
        ("start", Some(json!({ "worker": "w1" }))),
        ("heartbeat", Some(json!({ "worker": "w1" }))),
        ("progress", Some(json!({ "percent": 10 }))),
        ("requireAction", Some(json!({ "action": {} }))),
        ("resume", None),
        ("complete", Some(json!({ "response": {} }))),
        ("fail", Some(json!({ "error": { "message": "x" } }))),
        ("cancel", None),
    ];
    for state in [
        "pending",
        "running",
        "requires_action",
        "cancelling",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        for (name, body) in &verbs {
            let id = operation_in(&app, &project, state).await;
            let (status, answer) = verb(&app, &project, &id, name, body.clone()).await;
            match expected(state, name) {
                Some(after) => {
                    assert_eq!(status, StatusCode::OK, "{state} :{name} {answer}");
                    assert_eq!(answer["metadata"]["state"], after, "{state} :{name}");
                }
                None => {
                    assert_eq!(status, StatusCode::CONFLICT, "{state} :{name} {answer}");
                    assert_eq!(answer["error"]["code"], "conflict");
                    let message = answer["error"]["message"].as_str().unwrap();
                    assert!(message.contains(&format!("is {state}")), "{message}");
                }
            }
        }
    }
    // Expired: every verb is refused too.
    let id = operation_in(&app, &project, "pending").await;
    app.advance(Duration::from_secs(3600));
    // Every operation still open above expires with it.
    assert!(sweep(&app).await >= 1);
    for (name, body) in &verbs {
        let (status, answer) = verb(&app, &project, &id, name, body.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, ":{name} {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains("is expired"));
    }
}

#[tokio::test]
async fn a_repeated_transition_with_its_idempotency_key_is_answered_as_the_first() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let id = operation_in(&app, &project, "running").await;
    let url = format!("{}/v1/operations/{id}:complete", app.base);
    let send = |body: Value| {
        app.http
            .post(&url)
            .bearer_auth(&project.key)
            .header("idempotency-key", "finish-1")
            .json(&body)
            .send()
    };
    let first = send(json!({ "response": { "n": 1 } })).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    app.advance(Duration::from_secs(5));
    let again = send(json!({ "response": { "n": 1 } })).await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "not a 409 although the operation is done"
    );
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let different = send(json!({ "response": { "n": 2 } })).await.unwrap();
    assert_eq!(different.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let id = operation_in(&app, &project, "running").await;
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({ "kind": "bad kind" })),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({ "kind": "k", "expire_after": "soon" })),
            StatusCode::BAD_REQUEST,
            "expire_after",
        ),
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({ "kind": "k", "expire_after": "0s" })),
            StatusCode::BAD_REQUEST,
            "expire_after",
        ),
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({ "kind": "k", "metadata": [1] })),
            StatusCode::BAD_REQUEST,
            "metadata",
        ),
        (
            Method::POST,
            "/v1/operations".into(),
            Some(json!({ "kind": "k", "surprise": 1 })),
            StatusCode::BAD_REQUEST,
            "surprise",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:progress"),
            Some(json!({ "percent": 101 })),
            StatusCode::BAD_REQUEST,
            "percent",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:start"),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "worker",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:start"),
            Some(json!({ "worker": "w1", "lease_duration": "2h" })),
            StatusCode::BAD_REQUEST,
            "lease_duration",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:fail"),
            Some(json!({ "error": { "code": 0, "message": "x" } })),
            StatusCode::BAD_REQUEST,
            "error",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:requireAction"),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "action",
        ),
        (
            Method::POST,
            format!("/v1/operations/{id}:cancel"),
            Some(json!({ "x": 1 })),
            StatusCode::BAD_REQUEST,
            "x",
        ),
        (
            Method::GET,
            "/v1/operations?state=done".into(),
            None,
            StatusCode::BAD_REQUEST,
            "state",
        ),
        (
            Method::GET,
            "/v1/operations?colour=red".into(),
            None,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            Method::GET,
            format!("/v1/operations/{id}:wait?timeout=abc"),
            None,
            StatusCode::BAD_REQUEST,
            "timeout",
        ),
    ];
    for (method, path, body, status, field) in cases {
        let (got, answer) = app.call(method.clone(), &path, Some(&project.key), body).await;
        assert_eq!(got, status, "{method} {path} {answer}");
        assert_eq!(answer["error"]["field"], field, "{method} {path} {answer}");
    }
    for (method, path) in [
        (Method::GET, "/v1/operations/op_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned()),
        (Method::GET, "/v1/operations/nonsense".to_owned()),
        (
            Method::POST,
            "/v1/operations/op_01ARZ3NDEKTSV4RRFFQ69G5FAV:cancel".to_owned(),
        ),
        (Method::POST, format!("/v1/operations/{id}:explode")),
        (Method::GET, format!("/v1/operations/{id}:explode")),
        (
            Method::DELETE,
            "/v1/operations/op_01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        ),
    ] {
        let (got, answer) = app.call(method.clone(), &path, Some(&project.key), None).await;
        assert_eq!(got, StatusCode::NOT_FOUND, "{method} {path} {answer}");
    }
    let (got, answer) = app
        .call(
            Method::DELETE,
            &format!("/v1/operations/{id}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(got, StatusCode::CONFLICT, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("is running"));
    // Another project sees nothing.
    let other = app.project("other").await;
    let (got, _) = app
        .call(Method::GET, &format!("/v1/operations/{id}"), Some(&other.key), None)
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listing_filters_by_state_and_kind_and_pages() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let running = operation_in(&app, &project, "running").await;
    let pending = operation_in(&app, &project, "pending").await;
    let research = id_of(&create(&app, &project, json!({ "kind": "research" })).await);
    let list = |query: &'static str| {
        let app = &app;
        let key = project.key.clone();
        async move {
            let (status, body) = app
                .call(Method::GET, &format!("/v1/operations{query}"), Some(&key), None)
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let ids = |body: &Value| -> Vec<String> {
        body["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&list("?state=running").await), std::slice::from_ref(&running));
    let mut pendings = vec![pending.clone(), research.clone()];
    pendings.sort();
    assert_eq!(ids(&list("?state=pending").await), pendings);
    assert_eq!(ids(&list("?kind=research").await), std::slice::from_ref(&research));
    assert_eq!(ids(&list("?kind=research&state=running").await), Vec::<String>::new());
    let first = list("?page_size=2").await;
    assert_eq!(ids(&first).len(), 2);
    let token = first["next_page_token"].as_str().unwrap().to_owned();
    let (_, rest) = app
        .call(
            Method::GET,
            &format!("/v1/operations?page_size=2&page_token={token}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(ids(&rest).len(), 1);
}

#[tokio::test]
async fn wait_returns_the_moment_the_operation_is_done_or_at_its_timeout() {
    let app = Arc::new(TestApp::spawn().await);
    let project = app.project("acme").await;
    let id = operation_in(&app, &project, "running").await;

    // Timeout: the current state, not done.
    let started = std::time::Instant::now();
    let (status, current) = app
        .call(
            Method::GET,
            &format!("/v1/operations/{id}:wait?timeout=0.3s"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(current["done"], false);
    assert_eq!(current["metadata"]["state"], "running");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Completion while waiting: answered at once, long before the timeout.
    let waiter = {
        let app = Arc::clone(&app);
        let (key, id) = (project.key.clone(), id.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let answer = app
                .call(
                    Method::GET,
                    &format!("/v1/operations/{id}:wait?timeout=20s"),
                    Some(&key),
                    None,
                )
                .await;
            (answer, started.elapsed())
        })
    };
    // Let the waiter register; a change before that is seen by its first read.
    while app.running().store.operation_waiters().watched() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ok(&app, &project, &id, "progress", Some(json!({ "percent": 50 }))).await;
    ok(
        &app,
        &project,
        &id,
        "complete",
        Some(json!({ "response": { "ok": true } })),
    )
    .await;
    let ((status, done), took) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["done"], true);
    assert_eq!(done["response"]["ok"], true);
    assert!(took < Duration::from_secs(10), "answered on completion, took {took:?}");

    // Already done: answered at once; the registry is empty again.
    let (status, again) = app
        .call(
            Method::GET,
            &format!("/v1/operations/{id}:wait"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!((status, &again["done"]), (StatusCode::OK, &json!(true)));
    assert_eq!(app.running().store.operation_waiters().watched(), 0);
}

#[tokio::test]
async fn expiry_and_a_lapsed_worker_lease_are_swept_with_their_events() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    app.webhook(&project, &receiver.url("/"), &["operation.*"]).await;
    let short = id_of(&create(&app, &project, json!({ "kind": "k", "expire_after": "10m" })).await);
    let worked = id_of(&create(&app, &project, json!({ "kind": "k" })).await);
    ok(
        &app,
        &project,
        &worked,
        "start",
        Some(json!({ "worker": "w1", "lease_duration": "1m" })),
    )
    .await;

    app.advance(Duration::from_secs(59));
    ok(&app, &project, &worked, "heartbeat", Some(json!({ "worker": "w1" }))).await;
    app.advance(Duration::from_secs(59));
    assert_eq!(sweep(&app).await, 0, "the heartbeat extended the lease to 119 s");
    app.advance(Duration::from_secs(1));
    assert_eq!(sweep(&app).await, 1, "stalled");
    // Another worker may take it now; the stalled one is fenced out.
    let (status, refused) = verb(&app, &project, &worked, "complete", Some(json!({ "worker": "w2" }))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let taken = ok(&app, &project, &worked, "start", Some(json!({ "worker": "w2" }))).await;
    assert_eq!(taken["metadata"]["worker"], "w2");
    let (status, _) = verb(&app, &project, &worked, "heartbeat", Some(json!({ "worker": "w1" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // At 600 s: the short one expires; w2's lease (to 179 s) has lapsed.
    app.advance(Duration::from_secs(481));
    assert_eq!(sweep(&app).await, 2);
    let (_, expired) = app
        .call(
            Method::GET,
            &format!("/v1/operations/{short}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(expired["metadata"]["state"], "expired");
    assert_eq!(expired["done"], true);
    assert_eq!(expired["error"]["code"], 4);

    app.deliver_due().await;
    let mut seen: Vec<(String, String)> = receiver
        .received()
        .iter()
        .map(|r| r.json())
        .map(|e| {
            (
                e["data"]["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (worked.clone(), "operation.running".to_owned()),
        (worked.clone(), "operation.stalled".to_owned()),
        (short.clone(), "operation.expired".to_owned()),
    ];
    expected.push((worked.clone(), "operation.stalled".to_owned()));
    expected.sort();
    assert_eq!(seen, expected);
}

/// PostgreSQL: a `:wait` on node A returns when node B completes the
/// operation (LISTEN/NOTIFY); no polling in between.
#[tokio::test]
async fn wait_returns_on_another_nodes_transition() {
    if backend() != Backend::Postgres {
        return;
    }
    let a = Arc::new(TestApp::spawn().await);
    let mut config = a.config.clone();
    config.node.name = Some("operations-node-b".to_owned());
    let b = TestApp::start(config, Arc::clone(&a.data_dir), a.clock.clone(), false).await;
    let project = a.project("acme").await;
    let id = operation_in(&a, &project, "running").await;
    let waiter = {
        let a = Arc::clone(&a);
        let (key, id) = (project.key.clone(), id.clone());
        tokio::spawn(async move {
            a.call(
                Method::GET,
                &format!("/v1/operations/{id}:wait?timeout=20s"),
                Some(&key),
                None,
            )
            .await
        })
    };
    while a.running().store.operation_waiters().watched() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    ok(&b, &project, &id, "complete", Some(json!({ "response": {} }))).await;
    let (status, done) = waiter.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["done"], true, "{done}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
