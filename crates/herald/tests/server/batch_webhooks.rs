//! Per-batch webhooks (`webhook_config` on `POST /v1/batches`): a batch's
//! status events reach its own URIs (override) or also the project's
//! webhooks (additional), carry `user_metadata`, and verify from the public
//! JWKS alone with the signature crate, `v1a` and JWT; a bad config is a
//! 400 naming the field and leaves no batch behind.

use herald_signature::{JwtAlgorithm, JwtVerifier, Verifier};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::batches::{batch_events, create_batch, jsonl, line, run_batches, upload};
use crate::job_webhooks::jwks;
use crate::support::{Receiver, Reply, START, TestApp};

fn types(receiver: &Receiver) -> Vec<String> {
    batch_events(receiver).into_iter().map(|(t, _)| t).collect()
}

fn two_lines() -> Vec<u8> {
    jsonl(&[line("a", "m", "hello"), line("b", "m", "world")])
}

#[tokio::test]
async fn override_mode_sends_a_batchs_events_only_to_its_uris_signed_v1a() {
    let app = TestApp::spawn().await;
    let project_hook = Receiver::start().await;
    let batch_hook = Receiver::start().await;
    for receiver in [&project_hook, &batch_hook] {
        receiver.always(Reply::status(200));
    }
    let project = app.project("acme").await;
    app.webhook(&project, &project_hook.url("/"), &["*"]).await;
    let created = create_batch(
        &app,
        &project,
        &two_lines(),
        json!({ "webhook_config": { "uris": [batch_hook.url("/hook")], "user_metadata": { "run": "nightly-7" } } }),
    )
    .await;
    assert!(
        created.get("webhook_config").is_none(),
        "the batch object stays OpenAI's"
    );
    assert!(run_batches(&app).await > 0);
    app.deliver_due().await;

    assert_eq!(types(&batch_hook), ["batch.in_progress", "batch.completed"]);
    assert_eq!(project_hook.count(), 0, "override: the project's webhooks get nothing");
    let (keys, _) = jwks(&app).await;
    let verifier = Verifier::new(keys.trusted_keys());
    for request in batch_hook.received() {
        let event = request.json();
        assert_eq!(event["data"]["id"], created["id"]);
        assert_eq!(event["data"]["user_metadata"], json!({ "run": "nightly-7" }));
        assert!(request.header("webhook-signature").starts_with("v1a,"));
        verifier
            .verify_at(&request.headers, &request.body, START.as_unix_seconds())
            .expect("v1a verifies with the published key");
        let mut tampered = request.body.to_vec();
        tampered[10] ^= 1;
        assert!(
            verifier
                .verify_at(&request.headers, &tampered, START.as_unix_seconds())
                .is_err(),
            "a tampered body is refused"
        );
    }
    let completed = &batch_events(&batch_hook)[1].1;
    assert_eq!(completed["request_counts"]["completed"], 2);

    // Durable deliveries like any other: in the project's log, succeeded.
    let (_, log) = app.call(Method::GET, "/v1/deliveries", Some(&project.key), None).await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log}");
    assert!(deliveries.iter().all(|d| d["state"] == "succeeded"), "{log}");
    let (_, hooks) = app.call(Method::GET, "/v1/webhooks", Some(&project.key), None).await;
    assert_eq!(
        hooks["webhooks"].as_array().unwrap().len(),
        1,
        "the batch's row is hidden"
    );
}

#[tokio::test]
async fn additional_mode_also_reaches_the_project_and_jwts_verify_from_the_jwks() {
    let app = TestApp::spawn().await;
    let project_hook = Receiver::start().await;
    let rs256_hook = Receiver::start().await;
    let eddsa_hook = Receiver::start().await;
    for receiver in [&project_hook, &rs256_hook, &eddsa_hook] {
        receiver.always(Reply::status(200));
    }
    let project = app.project("acme").await;
    app.webhook(&project, &project_hook.url("/"), &["batch.*"]).await;
    let additional = create_batch(
        &app,
        &project,
        &two_lines(),
        json!({ "webhook_config": {
            "uris": [rs256_hook.url("/rs")], "mode": "additional", "signature_format": "jwt",
            "user_metadata": { "k": 1 },
        } }),
    )
    .await;
    let overriding = create_batch(
        &app,
        &project,
        &two_lines(),
        json!({ "webhook_config": { "uris": [eddsa_hook.url("/ed")], "signature_format": "jwt", "jwt_algorithm": "EdDSA" } }),
    )
    .await;
    run_batches(&app).await;
    app.deliver_due().await;

    assert_eq!(types(&rs256_hook), ["batch.in_progress", "batch.completed"]);
    assert_eq!(types(&eddsa_hook), ["batch.in_progress", "batch.completed"]);
    let project_seen: Vec<Value> = batch_events(&project_hook)
        .into_iter()
        .map(|(_, d)| d["id"].clone())
        .collect();
    assert_eq!(
        project_seen,
        [additional["id"].clone(), additional["id"].clone()],
        "additional: the project's too; override: not"
    );
    assert!(
        batch_events(&project_hook)
            .iter()
            .all(|(_, d)| d["user_metadata"] == json!({ "k": 1 }))
    );
    assert!(
        batch_events(&eddsa_hook)
            .iter()
            .all(|(_, d)| d["id"] == overriding["id"] && d.get("user_metadata").is_none()),
        "no user_metadata, no field"
    );

    let (keys, _) = jwks(&app).await;
    for (receiver, path, algorithm) in [
        (&rs256_hook, "/rs", JwtAlgorithm::Rs256),
        (&eddsa_hook, "/ed", JwtAlgorithm::EdDsa),
    ] {
        let verifier = JwtVerifier::new(keys.clone(), &receiver.url(path)).with_issuer("herald");
        for request in receiver.received() {
            let verified = verifier
                .verify_headers_at(&request.headers, &request.body, START.as_unix_seconds())
                .expect("the JWT verifies with the published key");
            assert_eq!(verified.algorithm(), algorithm);
            let mut tampered = request.body.to_vec();
            tampered[10] ^= 1;
            assert!(
                verifier
                    .verify_headers_at(&request.headers, &tampered, START.as_unix_seconds())
                    .is_err(),
                "the JWT is bound to the body"
            );
        }
    }
}

#[tokio::test]
async fn a_bad_webhook_config_is_a_400_naming_the_field_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let (status, file) = upload(&app, &project, &two_lines()).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let cases = [
        (json!({ "uris": [] }), "webhook_config.uris"),
        (json!({ "uris": ["http://10.0.0.1/hook"] }), "webhook_config.uris[0]"),
        (
            json!({ "uris": ["http://127.0.0.1/a", "http://169.254.169.254/"] }),
            "webhook_config.uris[1]",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a", "ftp://x/"] }),
            "webhook_config.uris[1]",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a", "http://127.0.0.1/a"] }),
            "webhook_config.uris",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a"], "mode": "sometimes" }),
            "webhook_config.mode",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a"], "signature_format": "hmac" }),
            "webhook_config.signature_format",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a"], "signature_format": "jwt", "jwt_algorithm": "HS256" }),
            "webhook_config.jwt_algorithm",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a"], "user_metadata": [1] }),
            "webhook_config.user_metadata",
        ),
        (
            json!({ "uris": ["http://127.0.0.1/a"], "secret": "x" }),
            "webhook_config.secret",
        ),
        (json!({ "uris": "http://127.0.0.1/a" }), "webhook_config.uris"),
    ];
    for (config, field) in cases {
        let body = json!({
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "webhook_config": config,
        });
        let (status, answer) = app
            .call(Method::POST, "/v1/batches", Some(&project.key), Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{config} {answer}");
        assert_eq!(answer["error"]["field"], field, "{config} {answer}");
    }
    let (_, list) = app.call(Method::GET, "/v1/batches", Some(&project.key), None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "nothing created: {list}");
    assert_eq!(
        app.query_count("SELECT COUNT(*) FROM webhooks").await,
        0,
        "and no hidden rows"
    );

    // `null` is no config: the project's webhooks as before.
    let created = create_batch(&app, &project, &two_lines(), json!({ "webhook_config": null })).await;
    assert_eq!(created["status"], "validating");
}
