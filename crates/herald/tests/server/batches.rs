//! OpenAI-compatible files and batches against the real server: uploads,
//! validation, execution against `builtin:echo` and a scripted upstream
//! (slow, 429 with Retry-After, 500, garbage, refused connections),
//! cancel, expiry on the manual clock, restart, and the webhook sent at
//! each status change.

use std::time::Duration;

use herald::config::UpstreamConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Project, Receiver, Reply, TestApp};

/// A multipart upload body (`purpose`, then `file`).
fn multipart(purpose: &str, content: &[u8]) -> (String, Vec<u8>) {
    let boundary = "herald-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.jsonl\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn upload(app: &TestApp, project: &Project, content: &[u8]) -> (StatusCode, Value) {
    let (content_type, body) = multipart("batch", content);
    app.call_raw(Method::POST, "/v1/files", &project.key, &content_type, body)
        .await
}

/// One chat-completions input line.
pub(crate) fn line(custom_id: &str, model: &str, text: &str) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    })
    .to_string()
}

pub(crate) fn jsonl(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

pub(crate) async fn create_batch(app: &TestApp, project: &Project, content: &[u8], extra: Value) -> Value {
    let (status, file) = upload(app, project, content).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let mut body = json!({
        "input_file_id": file["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        body[key] = value.clone();
    }
    let (status, batch) = app
        .call(Method::POST, "/v1/batches", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["status"], "validating", "{batch}");
    batch
}

/// Steps the batch engine until nothing is due at the current time.
pub(crate) async fn run_batches(app: &TestApp) -> usize {
    let mut total = 0;
    loop {
        let done = app.running().batches.run_once().await.expect("batch step");
        if done == 0 {
            return total;
        }
        total += done;
    }
}

async fn batch(app: &TestApp, project: &Project, id: &Value) -> Value {
    let (status, batch) = app
        .call(
            Method::GET,
            &format!("/v1/batches/{}", id.as_str().unwrap()),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    batch
}

/// The lines of a file's content.
async fn file_lines(app: &TestApp, project: &Project, id: &Value) -> Vec<Value> {
    let response = app
        .http
        .get(format!(
            "{}/v1/files/{}/content",
            app.base,
            id.as_str().expect("a file id")
        ))
        .bearer_auth(&project.key)
        .send()
        .await
        .expect("content");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn upstream(name: &str, base_url: String, models: &[&str], concurrency: usize) -> UpstreamConfig {
    UpstreamConfig {
        name: name.into(),
        base_url,
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        headers: [(
            "authorization".to_owned(),
            herald::config::HeaderValueSource::Literal("Bearer upstream-key".into()),
        )]
        .into(),
        max_concurrency: concurrency,
        timeout: Duration::from_secs(5),
        requests_per_second: None,
        allow_cidrs: Vec::new(),
    }
}

/// The batch events a receiver got: `(type, data)` in arrival order.
pub(crate) fn batch_events(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .received()
        .iter()
        .map(Received::json)
        .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("batch.")))
        .map(|e| (e["type"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

use crate::support::receiver::Received;

#[tokio::test]
async fn a_batch_runs_to_completion_in_input_order_and_announces_each_status() {
    let app = TestApp::spawn().await;
    let hooks = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &hooks.url("/hook"), &["batch.*"]).await;
    let lines: Vec<String> = (1..=7)
        .map(|i| line(&format!("req-{i}"), "any-model", &format!("hello {i}")))
        .collect();
    let created = create_batch(&app, &project, &jsonl(&lines), json!({"metadata": {"job": "nightly"}})).await;
    assert_eq!(created["object"], "batch");
    assert_eq!(created["completion_window"], "24h");
    assert_eq!(created["endpoint"], "/v1/chat/completions");
    assert_eq!(created["metadata"], json!({"job": "nightly"}));
    assert_eq!(
        created["expires_at"].as_i64().unwrap() - created["created_at"].as_i64().unwrap(),
        86_400
    );

    assert!(run_batches(&app).await > 0);
    let done = batch(&app, &project, &created["id"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"], json!({"total": 7, "completed": 7, "failed": 0}));
    assert!(
        done["in_progress_at"].is_i64() && done["completed_at"].is_i64(),
        "{done}"
    );
    assert!(done["error_file_id"].is_null(), "{done}");
    let output = file_lines(&app, &project, &done["output_file_id"]).await;
    let ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids, (1..=7).map(|i| format!("req-{i}")).collect::<Vec<_>>());
    assert_eq!(output[2]["response"]["status_code"], 200);
    assert_eq!(
        output[2]["response"]["body"]["choices"][0]["message"]["content"],
        "hello 3"
    );
    assert!(output[2]["error"].is_null());
    assert!(output[2]["id"].as_str().unwrap().starts_with("batch_req_"));

    app.deliver_due().await;
    let events = batch_events(&hooks);
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["batch.in_progress", "batch.completed"]);
    let (_, completed) = &events[1];
    assert_eq!(completed["id"], created["id"]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["sequence"], 2);
    assert_eq!(events[0].1["sequence"], 1);
    assert_eq!(completed["output_file_id"], done["output_file_id"]);
    assert_eq!(completed["request_counts"]["completed"], 7);
    assert_eq!(completed["metadata"], json!({"job": "nightly"}));

    let (status, list) = app
        .call(Method::GET, "/v1/batches?limit=1", Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["object"], "list");
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], created["id"]);
    assert_eq!(list["last_id"], created["id"]);
    let (_, files) = app.call(Method::GET, "/v1/files", Some(&project.key), None).await;
    assert_eq!(files["data"].as_array().unwrap().len(), 2, "input and output: {files}");
    let other = app.project("other").await;
    let path = format!("/v1/batches/{}", created["id"].as_str().unwrap());
    assert_eq!(
        app.call(Method::GET, &path, Some(&other.key), None).await.0,
        404,
        "another project's batch"
    );
}

#[tokio::test]
async fn validation_errors_name_the_line_and_the_field() {
    let receiver = Receiver::start().await;
    let url = format!("http://{}", receiver.addr);
    let app = TestApp::spawn_with(|config| {
        config.batches.echo_upstream = false;
        config.upstreams = vec![upstream("local", url, &["known-*"], 4)];
    })
    .await;
    let hooks = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &hooks.url("/hook"), &["batch.failed"]).await;
    let lines = [
        line("a", "known-1", "fine"),
        "{not json".to_owned(),
        line("c", "unknown-model", "x"),
        line("d", "known-1", "x").replace("/v1/chat/completions", "/v1/nope"),
        line("e", "known-1", "x").replace("\"POST\"", "\"GET\""),
        line("f", "known-1", "x").replace("/v1/chat/completions", "/v1/embeddings"),
    ];
    let created = create_batch(&app, &project, &jsonl(&lines), json!({})).await;
    run_batches(&app).await;
    let failed = batch(&app, &project, &created["id"]).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["failed_at"].is_i64());
    assert_eq!(failed["errors"]["object"], "list");
    let errors: Vec<(i64, &str, Value)> = failed["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_i64().unwrap(),
                e["code"].as_str().unwrap(),
                e["param"].clone(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (2, "invalid_json_line", Value::Null),
            (3, "model_not_found", json!("body.model")),
            (4, "invalid_url", json!("url")),
            (5, "invalid_method", json!("method")),
            (6, "mismatched_endpoint", json!("url")),
        ]
    );
    assert_eq!(receiver.count(), 0, "nothing was sent upstream");
    app.deliver_due().await;
    let events = batch_events(&hooks);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "batch.failed");
    assert_eq!(events[0].1["errors"]["data"][0]["line"], 2);

    let duplicate = create_batch(
        &app,
        &project,
        &jsonl(&[line("same", "known-1", "1"), line("same", "known-1", "2")]),
        json!({}),
    )
    .await;
    run_batches(&app).await;
    let failed = batch(&app, &project, &duplicate["id"]).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"][0]["code"], "duplicate_custom_id");
    assert_eq!(failed["errors"]["data"][0]["line"], 2);
    assert_eq!(failed["errors"]["data"][0]["param"], "custom_id");
}

#[tokio::test]
async fn upstream_failures_are_retried_then_recorded_in_the_error_file() {
    let receiver = Receiver::start().await;
    let ok = Reply::status(200)
        .with_header("content-type", "application/json")
        .with_header("x-request-id", "up-req-1")
        .with_body(r#"{"id":"chatcmpl-1","choices":[]}"#);
    receiver.script([
        Reply::status(429).with_header("retry-after", "5"),
        Reply::status(500).with_body("oops"),
        ok.clone(),
        Reply::status(200).with_body("<html>garbage</html>"),
        Reply::status(400).with_body(r#"{"error":{"message":"bad model"}}"#),
    ]);
    receiver.always(ok);
    // A port nothing listens on: every connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (url, dead) = (format!("http://{}", receiver.addr), format!("http://{closed}"));
    let app = TestApp::spawn_with(|config| {
        config.batches.echo_upstream = false;
        config.batches.max_attempts = 3;
        config.upstreams = vec![upstream("local", url, &["m"], 1), upstream("dead", dead, &["gone"], 1)];
    })
    .await;
    let project = app.project("acme").await;
    let mut lines: Vec<String> = (1..=5).map(|i| line(&format!("r{i}"), "m", "x")).collect();
    lines.push(line("r6", "gone", "x"));
    let created = create_batch(&app, &project, &jsonl(&lines), json!({})).await;
    run_batches(&app).await;
    assert_eq!(receiver.count(), 5, "one try each, one request at a time");
    let running = batch(&app, &project, &created["id"]).await;
    assert_eq!(running["status"], "in_progress");
    assert_eq!(
        running["request_counts"],
        json!({"total": 6, "completed": 1, "failed": 2})
    );

    app.advance(Duration::from_secs(1));
    run_batches(&app).await;
    assert_eq!(
        receiver.count(),
        6,
        "the 500 was retried after 1 s; the 429 waits for its Retry-After"
    );
    app.advance(Duration::from_secs(4));
    run_batches(&app).await;
    let done = batch(&app, &project, &created["id"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"], json!({"total": 6, "completed": 3, "failed": 3}));
    let received = receiver.received();
    assert_eq!(received.len(), 7);
    let keys: Vec<&str> = received.iter().map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys[0], keys[6], "the retried request kept its Idempotency-Key");
    assert_eq!(keys[1], keys[5]);
    assert!(keys[0].starts_with(created["id"].as_str().unwrap()));
    assert!(
        received
            .iter()
            .all(|r| r.header("authorization") == "Bearer upstream-key")
    );
    assert!(received.iter().all(|r| r.path == "/v1/chat/completions"));

    let output = file_lines(&app, &project, &done["output_file_id"]).await;
    let ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["r1", "r2", "r3"]);
    assert_eq!(output[0]["response"]["request_id"], "up-req-1");
    let errors = file_lines(&app, &project, &done["error_file_id"]).await;
    let summary: Vec<(&str, &str)> = errors
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap(), l["error"]["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("r4", "invalid_upstream_response"),
            ("r5", "upstream_error"),
            ("r6", "upstream_unreachable")
        ]
    );
    assert_eq!(errors[1]["response"]["status_code"], 400);
    assert_eq!(errors[1]["response"]["body"]["error"]["message"], "bad model");
}

/// One request at a time to a scripted upstream, so a test can stop a
/// batch between requests.
async fn one_at_a_time() -> (TestApp, Receiver) {
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).with_body(r#"{"ok":true}"#));
    let url = format!("http://{}", receiver.addr);
    let app = TestApp::spawn_with(|config| {
        config.batches.echo_upstream = false;
        config.upstreams = vec![upstream("local", url, &[], 1)];
    })
    .await;
    (app, receiver)
}

/// Validates the batch and runs exactly one request.
async fn validate_and_run_one(app: &TestApp) {
    assert!(
        app.running().batches.run_once().await.unwrap() >= 1,
        "validated and one request run"
    );
}

#[tokio::test]
async fn cancel_stops_new_requests_and_keeps_partial_results() {
    let (app, receiver) = one_at_a_time().await;
    let hooks = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &hooks.url("/hook"), &["batch.*"]).await;
    let lines: Vec<String> = (1..=4).map(|i| line(&format!("c{i}"), "m", "x")).collect();
    let created = create_batch(&app, &project, &jsonl(&lines), json!({})).await;
    validate_and_run_one(&app).await;
    assert_eq!(receiver.count(), 1);
    let path = format!("/v1/batches/{}/cancel", created["id"].as_str().unwrap());
    let (status, cancelling) = app.call(Method::POST, &path, Some(&project.key), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelling}");
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancelling_at"].is_i64());
    run_batches(&app).await;
    assert_eq!(receiver.count(), 1, "no request started after the cancel");
    let cancelled = batch(&app, &project, &created["id"]).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(
        cancelled["request_counts"],
        json!({"total": 4, "completed": 1, "failed": 0})
    );
    let output = file_lines(&app, &project, &cancelled["output_file_id"]).await;
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["custom_id"], "c1");

    let (status, error) = app.call(Method::POST, &path, Some(&project.key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("cancelled"),
        "{error}"
    );
    app.deliver_due().await;
    let types: Vec<String> = batch_events(&hooks).into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, ["batch.in_progress", "batch.cancelled"]);
    let missing = "/v1/batches/batch_01ARZ3NDEKTSV4RRFFQ69G5FAV/cancel";
    assert_eq!(app.call(Method::POST, missing, Some(&project.key), None).await.0, 404);
}

#[tokio::test]
async fn a_batch_cancelled_while_validating_ends_cancelled() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let created = create_batch(&app, &project, &jsonl(&[line("a", "m", "x")]), json!({})).await;
    let path = format!("/v1/batches/{}/cancel", created["id"].as_str().unwrap());
    assert_eq!(app.call(Method::POST, &path, Some(&project.key), None).await.0, 200);
    run_batches(&app).await;
    let cancelled = batch(&app, &project, &created["id"]).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["output_file_id"].is_null());
}

#[tokio::test]
async fn a_batch_past_its_window_expires_keeping_what_completed() {
    let (app, receiver) = one_at_a_time().await;
    let hooks = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &hooks.url("/hook"), &["batch.expired"]).await;
    let lines: Vec<String> = (1..=3).map(|i| line(&format!("e{i}"), "m", "x")).collect();
    let created = create_batch(&app, &project, &jsonl(&lines), json!({"completion_window": "1h"})).await;
    validate_and_run_one(&app).await;
    app.advance(Duration::from_secs(3600));
    run_batches(&app).await;
    assert_eq!(receiver.count(), 1, "nothing ran after the window closed");
    let expired = batch(&app, &project, &created["id"]).await;
    assert_eq!(expired["status"], "expired", "{expired}");
    assert!(expired["expired_at"].is_i64());
    assert_eq!(expired["request_counts"]["completed"], 1);
    let output = file_lines(&app, &project, &expired["output_file_id"]).await;
    assert_eq!(output.len(), 1);
    let errors = file_lines(&app, &project, &expired["error_file_id"]).await;
    let codes: Vec<(&str, &str)> = errors
        .iter()
        .map(|l| (l["custom_id"].as_str().unwrap(), l["error"]["code"].as_str().unwrap()))
        .collect();
    assert_eq!(codes, [("e2", "batch_expired"), ("e3", "batch_expired")]);
    app.deliver_due().await;
    let events = batch_events(&hooks);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "batch.expired");
    assert_eq!(events[0].1["error_file_id"], expired["error_file_id"]);
}

#[tokio::test]
async fn a_restart_resumes_without_repeating_completed_requests() {
    let (app, receiver) = one_at_a_time().await;
    let project = app.project("acme").await;
    let lines: Vec<String> = (1..=4).map(|i| line(&format!("s{i}"), "m", "x")).collect();
    let created = create_batch(&app, &project, &jsonl(&lines), json!({})).await;
    validate_and_run_one(&app).await;
    validate_and_run_one(&app).await;
    assert_eq!(receiver.count(), 2);
    let app = app.restart_with(|_| {}).await;
    run_batches(&app).await;
    let done = batch(&app, &project, &created["id"]).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(receiver.count(), 4, "each request was sent once");
    let output = file_lines(&app, &project, &done["output_file_id"]).await;
    let ids: Vec<&str> = output.iter().map(|l| l["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["s1", "s2", "s3", "s4"]);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_413_and_leaves_nothing_behind() {
    let app = TestApp::spawn_with(|config| config.batches.max_file_bytes = 300 * 1024).await;
    let project = app.project("acme").await;
    let big = vec![b'x'; 1024 * 1024];
    let (status, error) = upload(&app, &project, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error}");
    assert_eq!(error["error"]["code"], "payload_too_large");
    assert_eq!(app.query_count("SELECT COUNT(*) FROM files").await, 0);
    assert_eq!(app.query_count("SELECT COUNT(*) FROM file_chunks").await, 0);

    let (status, error) = upload(&app, &project, b"").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "file");
    let (content_type, body) = multipart("fine-tune", b"{}");
    let (status, error) = app
        .call_raw(Method::POST, "/v1/files", &project.key, &content_type, body)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"]["field"], "purpose");
    assert_eq!(app.query_count("SELECT COUNT(*) FROM files").await, 0);
}

#[tokio::test]
async fn files_round_trip_and_bad_batch_requests_name_the_field() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    // Larger than one stored chunk, so content streams several.
    let content: Vec<u8> = (0..600_000u32).map(|i| b"abcdefghij\n"[(i % 11) as usize]).collect();
    let (status, file) = upload(&app, &project, &content).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], 600_000);
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["filename"], "input.jsonl");
    let id = file["id"].as_str().unwrap();
    let response = app
        .http
        .get(format!("{}/v1/files/{id}/content", app.base))
        .bearer_auth(&project.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), content.as_slice());
    let (status, got) = app
        .call(Method::GET, &format!("/v1/files/{id}"), Some(&project.key), None)
        .await;
    assert_eq!((status, &got["id"]), (StatusCode::OK, &file["id"]));

    let cases = [
        (
            json!({"input_file_id": "file_01ARZ3NDEKTSV4RRFFQ69G5FAV", "endpoint": "/v1/chat/completions"}),
            "input_file_id",
        ),
        (
            json!({"input_file_id": "nope", "endpoint": "/v1/chat/completions"}),
            "input_file_id",
        ),
        (json!({"input_file_id": id, "endpoint": "/v1/images"}), "endpoint"),
        (
            json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "completion_window": "48h"}),
            "completion_window",
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "metadata": {"k": 1}}),
            "metadata",
        ),
        (
            json!({"input_file_id": id, "endpoint": "/v1/chat/completions", "webhook_config": {"uris": ["http://10.0.0.1/"]}}),
            "webhook_config.uris[0]",
        ),
    ];
    for (body, field) in cases {
        let (status, error) = app
            .call(Method::POST, "/v1/batches", Some(&project.key), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let other = app.project("other").await;
    let body = json!({"input_file_id": id, "endpoint": "/v1/chat/completions"});
    let (status, _) = app
        .call(Method::POST, "/v1/batches", Some(&other.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another project's file");

    let (status, deleted) = app
        .call(Method::DELETE, &format!("/v1/files/{id}"), Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted, json!({"id": id, "object": "file", "deleted": true}));
    assert_eq!(
        app.call(
            Method::GET,
            &format!("/v1/files/{id}/content"),
            Some(&project.key),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(app.query_count("SELECT COUNT(*) FROM file_chunks").await, 0);
}

#[tokio::test]
async fn progress_events_are_opt_in_and_throttled() {
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200).with_body(r#"{"ok":true}"#));
    let url = format!("http://{}", receiver.addr);
    let app = TestApp::spawn_with(|config| {
        config.batches.echo_upstream = false;
        config.batches.progress_interval = Duration::from_secs(10);
        config.upstreams = vec![upstream("local", url, &[], 1)];
    })
    .await;
    let hooks = Receiver::start().await;
    let project = app.project("acme").await;
    app.webhook(&project, &hooks.url("/hook"), &["batch.*"]).await;
    let lines: Vec<String> = (1..=4).map(|i| line(&format!("p{i}"), "m", "x")).collect();
    create_batch(&app, &project, &jsonl(&lines), json!({})).await;
    validate_and_run_one(&app).await; // t0: 1 done, progress
    validate_and_run_one(&app).await; // t0: 2 done, within the interval: no progress
    app.advance(Duration::from_secs(10));
    validate_and_run_one(&app).await; // t10: progress (2 done), then 3 done
    app.advance(Duration::from_secs(10));
    run_batches(&app).await; // t20: progress (3 done), then 4 done: completed
    app.deliver_due().await;
    let events = batch_events(&hooks);
    let summary: Vec<(&str, i64, i64)> = events
        .iter()
        .map(|(t, d)| {
            (
                t.as_str(),
                d["sequence"].as_i64().unwrap(),
                d["request_counts"]["completed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("batch.in_progress", 1, 0),
            ("batch.progress", 2, 1),
            ("batch.progress", 3, 2),
            ("batch.progress", 4, 3),
            ("batch.completed", 5, 4),
        ]
    );
    assert_eq!(events[1].1["status"], "in_progress");
}
