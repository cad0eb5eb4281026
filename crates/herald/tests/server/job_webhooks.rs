//! Per-job webhooks (`webhook_config` on `POST /v1/operations`): both
//! modes, both signature formats, verified from the public JWKS alone
//! (fetched without credentials) with the signature crate; a tampered body
//! refused; rotation overlap; SSRF at create; the deliveries in the log
//! and redeliverable.

use std::time::Duration;

use herald_signature::{JwkSet, JwtAlgorithm, JwtVerifier, Verifier};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Project, Receiver, Reply, START, TestApp};

pub(crate) async fn jwks(app: &TestApp) -> (JwkSet, String) {
    let response = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), StatusCode::OK, "no credentials needed");
    let cache = response.headers()["cache-control"].to_str().unwrap().to_owned();
    let text = response.text().await.unwrap();
    (JwkSet::from_json(&text).expect("a valid JWKS"), cache)
}

async fn operation(app: &TestApp, project: &Project, webhook_config: Value) -> String {
    let (status, op) = app
        .call(
            Method::POST,
            "/v1/operations",
            Some(&project.key),
            Some(json!({ "kind": "video.generate", "webhook_config": webhook_config })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{op}");
    op["id"].as_str().unwrap().to_owned()
}

async fn run_to_success(app: &TestApp, project: &Project, id: &str) {
    for (verb, body) in [
        ("start", json!({ "worker": "w1" })),
        ("complete", json!({ "response": { "uri": "gs://v.mp4" } })),
    ] {
        let (status, answer) = app
            .call(
                Method::POST,
                &format!("/v1/operations/{id}:{verb}"),
                Some(&project.key),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
}

fn types(receiver: &Receiver) -> Vec<String> {
    let mut events: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    events.sort_by_key(|e| e["data"]["sequence"].as_u64());
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn override_mode_sends_only_to_the_job_signed_v1a_verifiable_from_the_jwks() {
    let app = TestApp::spawn().await;
    let project_hook = Receiver::start().await;
    let job_hook = Receiver::start().await;
    for receiver in [&project_hook, &job_hook] {
        receiver.always(Reply::status(200));
    }
    let project = app.project("acme").await;
    app.webhook(&project, &project_hook.url("/"), &["*"]).await;
    let id = operation(
        &app,
        &project,
        json!({ "uris": [job_hook.url("/hook")], "user_metadata": { "job": "j-7" } }),
    )
    .await;
    run_to_success(&app, &project, &id).await;
    app.deliver_due().await;
    assert_eq!(types(&job_hook), ["operation.running", "operation.succeeded"]);
    assert_eq!(project_hook.count(), 0, "override: the project's webhooks get nothing");

    let (keys, cache) = jwks(&app).await;
    assert_eq!(cache, "public, max-age=300");
    assert_eq!(keys.keys().len(), 2, "one Ed25519 and one RSA key");
    let verifier = Verifier::new(keys.trusted_keys());
    for request in job_hook.received() {
        assert!(request.header("webhook-signature").starts_with("v1a,"));
        assert_eq!(request.json()["data"]["user_metadata"]["job"], "j-7");
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

    // The job's webhook is not one of the project's; its deliveries are in the log.
    let (_, hooks) = app.call(Method::GET, "/v1/webhooks", Some(&project.key), None).await;
    assert_eq!(hooks["webhooks"].as_array().unwrap().len(), 1);
    let (_, op) = app
        .call(Method::GET, &format!("/v1/operations/{id}"), Some(&project.key), None)
        .await;
    let job_webhook = op["metadata"]["job_webhooks"]["webhook_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, log) = app
        .call(
            Method::GET,
            &format!("/v1/deliveries?webhook_id={job_webhook}"),
            Some(&project.key),
            None,
        )
        .await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{log}");
    assert!(deliveries.iter().all(|d| d["state"] == "succeeded"));
    // Redelivery signs the same way.
    let delivery = deliveries[0]["id"].as_str().unwrap();
    let (status, redelivered) = app
        .call(
            Method::POST,
            &format!("/v1/deliveries/{delivery}:redeliver"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{redelivered}");
    let last = job_hook.received().pop().unwrap();
    verifier
        .verify_at(&last.headers, &last.body, START.as_unix_seconds())
        .expect("the redelivery verifies");
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
    app.webhook(&project, &project_hook.url("/"), &["operation.*"]).await;
    let rs256 = operation(
        &app,
        &project,
        json!({ "uris": [rs256_hook.url("/rs")], "mode": "additional", "signature_format": "jwt" }),
    )
    .await;
    let eddsa = operation(
        &app,
        &project,
        json!({ "uris": [eddsa_hook.url("/ed")], "signature_format": "jwt", "jwt_algorithm": "EdDSA" }),
    )
    .await;
    run_to_success(&app, &project, &rs256).await;
    run_to_success(&app, &project, &eddsa).await;
    app.deliver_due().await;
    assert_eq!(types(&rs256_hook), ["operation.running", "operation.succeeded"]);
    assert_eq!(types(&eddsa_hook), ["operation.running", "operation.succeeded"]);
    let project_seen: Vec<String> = project_hook
        .received()
        .iter()
        .map(|r| r.json()["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        project_seen,
        [rs256.clone(), rs256.clone()],
        "additional: the project's too; override: not"
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
            assert_eq!(verified.claims().jti, request.header("webhook-id"));
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
async fn rotation_publishes_both_keys_through_the_overlap_and_v1a_signs_with_both() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let (before, _) = jwks(&app).await;
    let old_verifier = Verifier::new(before.trusted_keys());

    let (status, rotated) = app
        .call(
            Method::POST,
            "/v1/signing_keys:rotate",
            Some(ADMIN_KEY),
            Some(json!({ "overlap": "1h" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let listed = rotated["signing_keys"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed.iter().filter(|k| k.get("retire_time").is_some()).count(), 2);
    let (status, _) = app
        .call(Method::POST, "/v1/signing_keys:rotate", Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin only");
    let (during, _) = jwks(&app).await;
    assert_eq!(during.keys().len(), 4, "old and new published during the overlap");

    // Nodes pick a rotation up within their key refresh.
    app.advance(herald::server_keys::REFRESH + Duration::from_secs(1));
    let id = operation(&app, &project, json!({ "uris": [receiver.url("/")] })).await;
    run_to_success(&app, &project, &id).await;
    app.deliver_due().await;
    let now = START.as_unix_seconds() + 31;
    let request = &receiver.received()[0];
    let entries: Vec<&str> = request.header("webhook-signature").split(' ').collect();
    assert_eq!(entries.len(), 2, "new and old Ed25519 keys both sign in the overlap");
    old_verifier
        .verify_at(&request.headers, &request.body, now)
        .expect("a receiver that cached the old JWKS still verifies");
    Verifier::new(during.trusted_keys())
        .verify_at(&request.headers, &request.body, now)
        .expect("and one with the new JWKS");

    // After the overlap: only the new keys.
    app.advance(Duration::from_secs(3600));
    let (after, _) = jwks(&app).await;
    assert_eq!(after.keys().len(), 2);
    let later = operation(&app, &project, json!({ "uris": [receiver.url("/")] })).await;
    run_to_success(&app, &project, &later).await;
    app.deliver_due().await;
    let request = receiver.received().pop().unwrap();
    assert_eq!(request.header("webhook-signature").split(' ').count(), 1);
    let now = START.as_unix_seconds() + 31 + 3600;
    assert!(
        old_verifier.verify_at(&request.headers, &request.body, now).is_err(),
        "the old key is retired"
    );
    Verifier::new(after.trusted_keys())
        .verify_at(&request.headers, &request.body, now)
        .expect("the new key verifies");
}

#[tokio::test]
async fn webhook_config_is_validated_and_ssrf_checked_at_create() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let cases = [
        (json!({ "uris": [] }), "webhook_config.uris"),
        (json!({ "uris": ["http://10.0.0.1/hook"] }), "webhook_config.uris[0]"),
        (
            json!({ "uris": ["http://127.0.0.1/a", "ftp://x/"] }),
            "webhook_config.uris[1]",
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
            json!({ "uris": ["http://127.0.0.1/a"], "jwt_algorithm": "EdDSA" }),
            "webhook_config.jwt_algorithm",
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
    ];
    for (config, field) in cases {
        let (status, answer) = app
            .call(
                Method::POST,
                "/v1/operations",
                Some(&project.key),
                Some(json!({ "kind": "k", "webhook_config": config })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{config} {answer}");
        assert_eq!(answer["error"]["field"], field, "{config} {answer}");
    }
    let (status, _) = app
        .call(Method::GET, "/v1/signing_keys", Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, keys) = app.call(Method::GET, "/v1/signing_keys", Some(ADMIN_KEY), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["signing_keys"].as_array().unwrap().len(), 2);
}

/// Pinned like the signature crate's interop tests.
const PYTHON_PACKAGES: [&str; 2] = ["cryptography==50.0.2", "pyjwt==2.15.1"];

/// One venv per test binary, built on first use under the target directory.
fn python() -> std::path::PathBuf {
    use std::process::Command;
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("job-webhooks-venv-{}", env!("CARGO_CRATE_NAME")));
    let marker = venv.join("installed");
    let wanted = PYTHON_PACKAGES.join(" ");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return venv.join("bin/python");
    }
    let run = |command: &mut Command| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed (this test needs python3 with venv and PyPI): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
        .args(PYTHON_PACKAGES));
    std::fs::write(&marker, wanted).expect("marker written");
    venv.join("bin/python")
}

fn run_python(input: Value) -> Value {
    crate::support::python::run_json_script(&python(), "job_webhooks_interop.py", &input)
}

/// PyJWT and `cryptography` verify what Herald sent, from the JWKS alone.
/// The clock starts at the real time: PyJWT checks `exp` by the wall clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_libraries_verify_per_job_webhooks_from_the_jwks() {
    use base64::Engine as _;
    let data_dir = std::sync::Arc::new(tempfile::tempdir().expect("temp dir"));
    let config = crate::support::test_config(data_dir.path());
    let clock = herald::clock::Clock::now(&herald::clock::SystemClock);
    let app = TestApp::start(
        config,
        data_dir,
        std::sync::Arc::new(herald::clock::ManualClock::new(clock)),
        false,
    )
    .await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let formats = [
        ("standard", json!({ "uris": [receiver.url("/standard")] })),
        (
            "jwt",
            json!({ "uris": [receiver.url("/rs256")], "signature_format": "jwt" }),
        ),
        (
            "jwt",
            json!({ "uris": [receiver.url("/eddsa")], "signature_format": "jwt", "jwt_algorithm": "EdDSA" }),
        ),
    ];
    for (_, config) in &formats {
        let id = operation(&app, &project, config.clone()).await;
        run_to_success(&app, &project, &id).await;
    }
    app.deliver_due().await;
    let received = receiver.received();
    assert_eq!(received.len(), 6);
    let jwks_text = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let deliveries: Vec<Value> = received
        .iter()
        .map(|request| {
            json!({
                "format": if request.path == "/standard" { "standard" } else { "jwt" },
                "id": request.header("webhook-id"),
                "timestamp": request.header("webhook-timestamp"),
                "signature": request.header("webhook-signature"),
                "audience": receiver.url(&request.path),
                "body_b64": base64::engine::general_purpose::STANDARD.encode(&request.body),
            })
        })
        .collect();
    let input = json!({ "jwks": serde_json::from_str::<Value>(&jwks_text).unwrap(), "deliveries": deliveries });
    let results = tokio::task::spawn_blocking(move || run_python(input))
        .await
        .expect("joined");
    for (result, request) in results.as_array().unwrap().iter().zip(&received) {
        assert_eq!(result["ok"], true, "{} {result}", request.path);
        assert_eq!(result["tampered_ok"], false, "{} {result}", request.path);
    }
}

/// `herald signing-keys rotate|list` drive the admin API of a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_rotates_the_keys() {
    let app = TestApp::spawn().await;
    let base = app.base.clone();
    let run = move |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("signing-keys")
            .args(args)
            .args(["--url", &base])
            .env("HERALD_ADMIN_KEY", ADMIN_KEY)
            .output()
            .expect("herald runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let listed = {
        let run = run.clone();
        tokio::task::spawn_blocking(move || run(&["list"])).await.unwrap()
    };
    assert!(listed.0, "{}", listed.2);
    let keys: Value = serde_json::from_str(&listed.1).expect("JSON");
    assert_eq!(keys["signing_keys"].as_array().unwrap().len(), 2);
    let rotated = {
        let run = run.clone();
        tokio::task::spawn_blocking(move || run(&["rotate", "--overlap", "2h"]))
            .await
            .unwrap()
    };
    assert!(rotated.0, "{}", rotated.2);
    let keys: Value = serde_json::from_str(&rotated.1).expect("JSON");
    assert_eq!(keys["signing_keys"].as_array().unwrap().len(), 4);
    let (jwks, _) = jwks(&app).await;
    assert_eq!(jwks.keys().len(), 4);
    let refused = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["signing-keys", "rotate", "--url", "http://127.0.0.1:1"])
            .env_remove("HERALD_ADMIN_KEY")
            .output()
            .expect("herald runs")
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HERALD_ADMIN_KEY"));
}
