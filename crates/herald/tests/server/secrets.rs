//! Signing secrets: `:rotateSigningSecret` (both secrets verify with an
//! independent Standard Webhooks library during the overlap, the old one
//! stops at its expiry by the manual clock), immediate revocation, the
//! request's validation, and secrets at rest: no secret bytes in any
//! database file or table, plaintext rows from older versions sealed at
//! start, and the master key checked at start (process tests).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald::store::{ClaimRequest, KeyAlgorithm, StoreError};
use herald_signature::{HmacKey, SigningKey, TrustedKey, Verifier};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::multinode::{herald_command, start, wait_ready};
use crate::support::backend::{Backend, TEST_MASTER_KEY, backend, fresh_database};
use crate::support::receiver::Received;
use crate::support::{ADMIN_KEY, Project, Receiver, Reply, TestApp, post_json};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn rotate_path(webhook: &Value) -> String {
    format!("/v1/webhooks/{}:rotateSigningSecret", webhook["id"].as_str().unwrap())
}

/// Verifies `request` with PyPI `standardwebhooks` (its clock pinned to
/// `now`) once per secret; one result per secret.
fn verify_with_standardwebhooks(now: i64, request: &Received, secrets: &[&str]) -> Vec<Result<(), String>> {
    let cases: Vec<Value> = secrets
        .iter()
        .map(|secret| {
            json!({
                "secret": secret,
                "id": request.header("webhook-id"),
                "timestamp": request.header("webhook-timestamp"),
                "signature": request.header("webhook-signature"),
                "body": String::from_utf8(request.body.to_vec()).expect("a JSON body"),
            })
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server/standardwebhooks_verify.py");
    let mut child = Command::new(crate::genai::python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    let input = json!({ "now": now, "cases": cases }).to_string();
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.as_bytes()).expect("input written");
    let output = child.wait_with_output().expect("python finishes");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON results");
    results
        .into_iter()
        .map(|r| match r["ok"].as_bool() {
            Some(true) => Ok(()),
            _ => Err(r["error"].as_str().unwrap_or("?").to_owned()),
        })
        .collect()
}

async fn secrets_listed(app: &TestApp, project: &Project, webhook: &Value) -> Vec<Value> {
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let (status, got) = app.call(Method::GET, &path, Some(&project.key), None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    got["signing_secrets"].as_array().expect("signing_secrets").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_overlap_both_secrets_verify_then_the_old_one_stops() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/hook"), &["batch.*"]).await;
    let old = webhook["new_signing_secret"].as_str().unwrap().to_owned();

    // The google-genai SDK's body: `{}`, meaning the default 24 h overlap.
    let (status, rotated) = app
        .call(
            Method::POST,
            &rotate_path(&webhook),
            Some(&project.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().expect("the new secret, once").to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(rotated.as_object().unwrap().len(), 1, "only the secret: {rotated}");
    let listed = secrets_listed(&app, &project, &webhook).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let rotated_at = app.clock_now();
    assert!(new.starts_with(listed[0]["truncated_secret"].as_str().unwrap().trim_end_matches('…')));
    assert!(listed[0].get("expire_time").is_none(), "the new one has no expiry");
    assert!(old.starts_with(listed[1]["truncated_secret"].as_str().unwrap().trim_end_matches('…')));
    assert_eq!(
        listed[1]["expire_time"],
        rotated_at.saturating_add(DAY).to_rfc3339(),
        "the old one signs for another 24 h"
    );

    app.publish(&project, "batch.succeeded", json!({ "id": "b1" })).await;
    assert_eq!(app.deliver_due().await, 1);
    let during = &receiver.received()[0];
    assert_eq!(
        during.header("webhook-signature").matches("v1,").count(),
        2,
        "one entry per live secret"
    );
    let now = app.clock_now().as_unix_seconds();
    assert_eq!(
        verify_with_standardwebhooks(now, during, &[&old, &new]),
        [Ok(()), Ok(())],
        "both secrets verify with an independent library"
    );

    // The overlap ends by the injected clock: the old secret stops signing.
    app.advance(DAY);
    assert_eq!(secrets_listed(&app, &project, &webhook).await.len(), 1);
    app.publish(&project, "batch.succeeded", json!({ "id": "b2" })).await;
    assert_eq!(app.deliver_due().await, 1);
    let after = &receiver.received()[1];
    assert_eq!(after.header("webhook-signature").matches("v1,").count(), 1);
    let now = app.clock_now().as_unix_seconds();
    let results = verify_with_standardwebhooks(now, after, &[&old, &new]);
    assert!(
        results[0].as_ref().is_err_and(|e| e.contains("No matching signature")),
        "{results:?}"
    );
    assert_eq!(results[1], Ok(()));

    // And it is deleted by housekeeping.
    herald::maintenance::run_once(
        app.running().store.as_ref(),
        &(app.clock.clone() as herald::clock::SharedClock),
    )
    .await
    .unwrap();
    let id = webhook["id"].as_str().unwrap();
    assert_eq!(
        app.query_count(&format!(
            "SELECT COUNT(*) FROM webhook_secrets WHERE webhook_id = '{id}'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn immediate_revocation_and_what_the_method_accepts() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/hook"), &["batch.*"]).await;
    let old = webhook["new_signing_secret"].as_str().unwrap().to_owned();
    let path = rotate_path(&webhook);

    let body = json!({ "revocation_behavior": "revoke_previous_secrets_immediately" });
    let (status, rotated) = app.call(Method::POST, &path, Some(&project.key), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(secrets_listed(&app, &project, &webhook).await.len(), 1);
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let request = &receiver.received()[0];
    let at = app.clock_now().as_unix_seconds();
    let verifies = |secret: &str| {
        Verifier::new(vec![TrustedKey::Hmac(HmacKey::parse(secret).unwrap())])
            .verify_at(&request.headers, &request.body, at)
            .is_ok()
    };
    assert!(verifies(&new) && !verifies(&old), "the revoked secret no longer signs");

    // No body at all (no content type either) works too: the default.
    let (status, again) = app.call(Method::POST, &path, Some(&project.key), None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(secrets_listed(&app, &project, &webhook).await.len(), 2);

    for (body, field) in [
        (json!({ "revocation_behavior": "later" }), "revocation_behavior"),
        (json!({ "revocation_behavior": 3 }), "revocation_behavior"),
        (json!({ "revocation": "x" }), ""),
    ] {
        let (status, error) = app.call(Method::POST, &path, Some(&project.key), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["code"], "invalid_argument", "{error}");
        if !field.is_empty() {
            assert_eq!(error["error"]["field"], field, "{error}");
        }
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/v1/webhooks/wh_01ARZ3NDEKTSV4RRFFQ69G5FAV:rotateSigningSecret",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = app.project("other").await;
    let (status, _) = app.call(Method::POST, &path, Some(&other.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another project's webhook");

    // An Ed25519 webhook: the answer is the new public key, never a private one.
    let body = json!({ "uri": receiver.url("/ed"), "subscribed_events": ["*"], "signing": "ed25519" });
    let (status, ed) = app
        .call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ed}");
    let (status, rotated) = app
        .call(Method::POST, &rotate_path(&ed), Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated.get("secret").is_none(), "{rotated}");
    let public_key = rotated["public_key"].as_str().expect("the new public key");
    assert!(public_key.starts_with("whpk_"));
    let listed = secrets_listed(&app, &project, &ed).await;
    assert_eq!(listed[0]["public_key"], public_key);
}

/// Every secret that signs anywhere now, as the dispatcher opens them
/// (the only way to see an Ed25519 private key), in text form.
async fn every_live_secret(app: &TestApp, project: &Project) -> Vec<String> {
    app.publish(project, "batch.succeeded", json!({})).await;
    let now = app.clock_now();
    let batch = app
        .running()
        .store
        .claim(ClaimRequest {
            now,
            lease_until: now.saturating_add(Duration::from_secs(30)),
            limit: 100,
            default_room: 100,
            room: Vec::new(),
            max_leased_per_webhook: 100,
        })
        .await
        .unwrap();
    let mut secrets: Vec<String> = batch
        .jobs
        .iter()
        .flat_map(|job| job.endpoint.secrets.iter())
        .map(|secret| match secret.material.as_ref().expect("opens").signing_key() {
            SigningKey::Hmac(key) => key.expose_secret().to_string(),
            SigningKey::Ed25519(key) => key.expose_secret().to_string(),
        })
        .collect();
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Everything the database holds, as bytes: SQLite's files (database and
/// WAL); on PostgreSQL the text of every row of every table.
async fn database_contents(app: &TestApp) -> Vec<u8> {
    match &app.config.storage.database_url {
        None => {
            let mut bytes = Vec::new();
            for file in ["herald.db", "herald.db-wal"] {
                if let Ok(content) = std::fs::read(app.data_dir.path().join(file)) {
                    bytes.extend(content);
                }
            }
            assert!(!bytes.is_empty());
            bytes
        }
        Some(url) => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let tables = client
                .query(
                    "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = 'public'",
                    &[],
                )
                .await
                .unwrap();
            let mut text = String::new();
            for table in tables {
                let name: String = table.get(0);
                let rows: Option<String> = client
                    .query_one(&format!("SELECT string_agg(t::TEXT, E'\\n') FROM \"{name}\" t"), &[])
                    .await
                    .unwrap()
                    .get(0);
                text.push_str(&rows.unwrap_or_default());
            }
            assert!(text.contains("whs_"), "the secrets table was read");
            text.into_bytes()
        }
    }
}

/// Fails if any form of `secret` (its text, its base64 part, its raw
/// bytes, their hex as PostgreSQL prints bytea) is in `contents`.
fn assert_absent(contents: &[u8], secret: &str) {
    let (prefix, encoded) = secret.split_once('_').expect("a prefixed secret");
    let raw = STANDARD.decode(encoded).expect("base64");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for (form, needle) in [
        ("text", secret.as_bytes().to_vec()),
        ("base64", encoded.as_bytes().to_vec()),
        ("raw bytes", raw.clone()),
        ("hex", hex.into_bytes()),
    ] {
        assert!(
            !contents.windows(needle.len()).any(|window| window == needle.as_slice()),
            "the {prefix} secret's {form} is in the database"
        );
    }
}

#[tokio::test]
async fn the_database_alone_reveals_no_secret() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let project = app.project("acme").await;
    let hmac = app.webhook(&project, &receiver.url("/a"), &["*"]).await;
    let body = json!({ "uri": receiver.url("/b"), "subscribed_events": ["*"], "signing": "ed25519" });
    let (status, ed) = app
        .call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for webhook in [&hmac, &ed] {
        let (status, _) = app
            .call(Method::POST, &rotate_path(webhook), Some(&project.key), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let secrets = every_live_secret(&app, &project).await;
    assert_eq!(secrets.len(), 4, "two webhooks, two live secrets each");
    // Herald's own private keys, made and used by per-job webhooks in
    // both signature formats (v1a: Ed25519; jwt: RS256).
    let job_hook = Receiver::start().await;
    job_hook.always(Reply::status(200));
    for format in ["standard", "jwt"] {
        let config = json!({ "uris": [job_hook.url("/job")], "signature_format": format });
        let body = json!({ "kind": "export", "webhook_config": config });
        let (status, op) = app
            .call(Method::POST, "/v1/operations", Some(&project.key), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{op}");
        let path = format!("/v1/operations/{}:start", op["id"].as_str().unwrap());
        let (status, answer) = app
            .call(Method::POST, &path, Some(&project.key), Some(json!({ "worker": "w1" })))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    app.deliver_due().await;
    assert_eq!(job_hook.count(), 2, "one signed delivery per format");
    let keys = app
        .running()
        .store
        .signing_keys(app.clock_now())
        .await
        .expect("the keys open");
    assert_eq!(keys.len(), 2, "one Ed25519 and one RSA key");
    let check = |contents: &[u8]| {
        for secret in &secrets {
            assert_absent(contents, secret);
        }
        for key in &keys {
            match key.algorithm {
                KeyAlgorithm::EdDsa => assert_absent(contents, &key.private_key),
                KeyAlgorithm::Rs256 => assert_pem_absent(contents, &key.private_key),
            }
        }
    };
    check(&database_contents(&app).await);
    // Also after a clean stop (SQLite checkpoints its WAL into the file).
    let app = app.restart_with(|_| {}).await;
    check(&database_contents(&app).await);
}

/// Fails if any form of the PKCS#8 PEM `pem` is in `contents`: the PEM
/// text, its base64 (whole, or its first line), the DER bytes, their hex,
/// or the DER's last 64 bytes (private CRT values) raw or in hex.
fn assert_pem_absent(contents: &[u8], pem: &str) {
    let lines: Vec<&str> = pem.lines().filter(|line| !line.starts_with("-----")).collect();
    assert!(!lines.is_empty(), "a PEM body");
    let base64 = lines.concat();
    let der = STANDARD.decode(&base64).expect("PEM base64");
    let tail = &der[der.len() - 64..];
    let hex = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes()
    };
    for (form, needle) in [
        ("PEM text", pem.as_bytes().to_vec()),
        ("base64", base64.clone().into_bytes()),
        ("first base64 line", lines[0].as_bytes().to_vec()),
        ("DER", der.clone()),
        ("DER hex", hex(&der)),
        ("private tail", tail.to_vec()),
        ("private tail hex", hex(tail)),
    ] {
        assert!(
            !contents.windows(needle.len()).any(|window| window == needle.as_slice()),
            "the RSA private key's {form} is in the database"
        );
    }
}

#[tokio::test]
async fn plaintext_secrets_from_an_older_herald_are_sealed_at_start() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, &receiver.url("/hook"), &["*"]).await;
    let legacy = HmacKey::generate().expose_secret().to_string();
    let id = webhook["id"].as_str().unwrap();
    // What a Herald before sealing stored: the secret itself.
    let app = app
        .restart_with_sql(&format!(
            "UPDATE webhook_secrets SET secret = '{legacy}', key_id = NULL, sealed = NULL WHERE webhook_id = '{id}'"
        ))
        .await;
    assert_eq!(
        app.query_count("SELECT COUNT(*) FROM webhook_secrets WHERE key_id IS NULL OR sealed IS NULL")
            .await,
        0,
        "every row sealed"
    );
    assert_absent(&database_contents(&app).await, &legacy);
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let request = &receiver.received()[0];
    let now = app.clock_now().as_unix_seconds();
    Verifier::new(vec![TrustedKey::Hmac(HmacKey::parse(&legacy).unwrap())])
        .verify_at(&request.headers, &request.body, now)
        .expect("the migrated secret still signs");
}

/// Herald's signing keys, made on first use (the JWKS), as the store opens them.
async fn signing_keys(app: &TestApp) -> Vec<herald::store::StoredSigningKey> {
    let response = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.running()
        .store
        .signing_keys(app.clock_now())
        .await
        .expect("the keys open")
}

fn private_keys(keys: &[herald::store::StoredSigningKey]) -> Vec<(String, String)> {
    keys.iter()
        .map(|key| (key.kid.clone(), key.private_key.to_string()))
        .collect()
}

#[tokio::test]
async fn plain_signing_keys_from_an_older_herald_are_sealed_at_start() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    app.webhook(&project, "https://example.com/hook", &["*"]).await;
    let before = private_keys(&signing_keys(&app).await);
    assert_eq!(before.len(), 2);
    // What a Herald before sealing stored: `plain:` and the key.
    let sql: String = before
        .iter()
        .map(|(kid, key)| {
            format!(
                "UPDATE signing_keys SET private_key = 'plain:{key}', key_id = NULL, sealed = NULL WHERE kid = '{kid}';"
            )
        })
        .collect();
    let app = app.restart_with_sql(&sql).await;
    assert_eq!(
        app.query_count(
            "SELECT COUNT(*) FROM signing_keys WHERE key_id IS NULL OR sealed IS NULL OR private_key <> ''"
        )
        .await,
        0,
        "every row sealed"
    );
    assert_eq!(private_keys(&signing_keys(&app).await), before, "the same keys, opened");
    let contents = database_contents(&app).await;
    assert_absent(
        &contents,
        &before.iter().find(|(kid, _)| kid.contains("eddsa")).unwrap().1,
    );
    assert_pem_absent(
        &contents,
        &before.iter().find(|(kid, _)| kid.contains("rs256")).unwrap().1,
    );
}

#[tokio::test]
async fn a_sealed_signing_key_moved_to_another_row_does_not_open() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    app.webhook(&project, "https://example.com/hook", &["*"]).await;
    let keys = private_keys(&signing_keys(&app).await);
    let (ed, rs) = (&keys[0].0, &keys[1].0);
    // Two keys' blobs swapped: each is bound to its own kid.
    let swap = format!(
        "CREATE TABLE swap AS SELECT kid, sealed FROM signing_keys; \
         UPDATE signing_keys SET sealed = (SELECT sealed FROM swap \
           WHERE swap.kid = CASE signing_keys.kid WHEN '{ed}' THEN '{rs}' ELSE '{ed}' END) \
         WHERE kid IN ('{ed}', '{rs}'); DROP TABLE swap;"
    );
    let app = app.restart_with_sql(&swap).await;
    let error = app
        .running()
        .store
        .signing_keys(app.clock_now())
        .await
        .expect_err("a moved blob");
    assert!(
        matches!(&error, StoreError::Corrupt(message) if message.contains("moved")),
        "{error:?}"
    );
    // Swapped back, they open again; then a webhook secret's blob in a
    // signing key's row: bound to another label, refused too.
    let app = app.restart_with_sql(&swap).await;
    assert_eq!(private_keys(&signing_keys(&app).await), keys);
    let app = app
        .restart_with_sql(&format!(
            "UPDATE signing_keys SET sealed = (SELECT sealed FROM webhook_secrets LIMIT 1), \
             key_id = (SELECT key_id FROM webhook_secrets LIMIT 1) WHERE kid = '{ed}';"
        ))
        .await;
    let error = app
        .running()
        .store
        .signing_keys(app.clock_now())
        .await
        .expect_err("a webhook secret's blob");
    assert!(
        matches!(&error, StoreError::Corrupt(message) if message.contains(ed.as_str())),
        "{error:?}"
    );
    let (status, _) = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert!(
        status.is_server_error(),
        "never served from a key that does not open: {status}"
    );
}

/// Runs `herald serve` expecting it to fail; returns its stderr.
fn failed_start(mut command: Command) -> String {
    let output = command.output().expect("herald runs");
    assert!(!output.status.success(), "it must not start");
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_master_key_stops_the_process_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = match backend() {
        Backend::Postgres => Some(fresh_database().await),
        Backend::Sqlite => None,
    };
    let command = |key: Option<&str>| {
        let mut command = herald_command(dir.path());
        if let Some(url) = &database_url {
            command.env("HERALD_DATABASE_URL", url);
        }
        if let Some(key) = key {
            command.env("HERALD_MASTER_KEY", key);
        }
        command
    };
    let first_key = match &database_url {
        Some(_) => {
            let stderr = failed_start(command(None));
            assert!(
                stderr.contains("missing master key") && stderr.contains("HERALD_MASTER_KEY"),
                "{stderr}"
            );
            Some(TEST_MASTER_KEY)
        }
        None => None,
    };
    // The first start records the key in force (SQLite: generates master.key).
    let mut server = tokio::task::block_in_place(|| start(command(first_key)));
    server.kill();
    if database_url.is_none() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "master.key: owner only");
    }
    let wrong = herald::domain::secret::MasterKey::generate().unwrap();
    let stderr = failed_start(command(Some(&wrong.expose_secret())));
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].contains("wrong or missing master key"), "{stderr}");
    assert!(
        lines[0].contains(wrong.id().as_str()) && lines[0].contains("mk_"),
        "{stderr}"
    );
    let bad = failed_start(command(Some("not-a-key")));
    assert!(bad.contains("HERALD_MASTER_KEY"), "{bad}");
}

/// SQLite without `HERALD_MASTER_KEY`: `herald master-key rotate` (Herald
/// stopped) replaces `master.key` and reseals; deliveries still verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotate_replaces_the_generated_key_file() {
    if backend() == Backend::Postgres {
        return; // PostgreSQL's rotation (beside running nodes) is in the store contract.
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let http = reqwest::Client::new();
    let mut server = tokio::task::block_in_place(|| start(herald_command(dir.path())));
    wait_ready(&http, &server.base, Duration::from_secs(10)).await;
    let base = server.base.clone();
    let project = post_json(&http, &base, "/v1/projects", ADMIN_KEY, json!({ "name": "acme" })).await;
    let key_path = format!("/v1/projects/{}/api_keys", project["id"].as_str().unwrap());
    let key = post_json(&http, &base, &key_path, ADMIN_KEY, json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = json!({ "uri": receiver.url("/hook"), "subscribed_events": ["*"] });
    let secret = post_json(&http, &base, "/v1/webhooks", &key, hook).await["new_signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    server.kill();

    let before = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["master-key", "rotate", "--data-dir"])
        .arg(dir.path())
        .env_remove("HERALD_MASTER_KEY")
        .env_remove("HERALD_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sealed 1 signing secrets and keys anew"), "{stdout}");
    let after = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert_ne!(before, after, "a new key");
    assert!(!dir.path().join("master.key.next").exists());

    // A crash after the commit but before the rename leaves both files:
    // the next start finishes the switch.
    std::fs::write(dir.path().join("master.key"), &before).unwrap();
    std::fs::write(dir.path().join("master.key.next"), &after).unwrap();
    let mut server = tokio::task::block_in_place(|| start(herald_command(dir.path())));
    wait_ready(&http, &server.base, Duration::from_secs(10)).await;
    server.kill();
    assert_eq!(std::fs::read_to_string(dir.path().join("master.key")).unwrap(), after);
    assert!(!dir.path().join("master.key.next").exists());
    // A crash before the commit leaves a key nothing was sealed under:
    // the next start discards it.
    let stray = herald::domain::secret::MasterKey::generate().unwrap();
    std::fs::write(dir.path().join("master.key.next"), stray.expose_secret().as_str()).unwrap();

    let server = tokio::task::block_in_place(|| start(herald_command(dir.path())));
    wait_ready(&http, &server.base, Duration::from_secs(10)).await;
    assert_eq!(std::fs::read_to_string(dir.path().join("master.key")).unwrap(), after);
    assert!(!dir.path().join("master.key.next").exists());
    post_json(
        &http,
        &server.base,
        "/v1/events",
        &key,
        json!({ "type": "batch.succeeded", "data": {} }),
    )
    .await;
    let received = receiver.wait_for(1, Duration::from_secs(10)).await;
    let at: i64 = received[0].header("webhook-timestamp").parse().unwrap();
    Verifier::new(vec![TrustedKey::Hmac(HmacKey::parse(&secret).unwrap())])
        .verify_at(&received[0].headers, &received[0].body, at)
        .expect("the same secret signs, sealed under the new key");
}

/// The sealed secret is bound to its row: copied into another webhook's
/// row it does not open, and that webhook's deliveries fail as `signing`
/// instead of going out signed with another webhook's secret.
#[tokio::test]
async fn a_sealed_secret_moved_to_another_row_never_signs() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let a = app.webhook(&project, &receiver.url("/a"), &["*"]).await;
    let b = app.webhook(&project, &receiver.url("/b"), &["*"]).await;
    let (a_id, b_id) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let app = app
        .restart_with_sql(&format!(
            "UPDATE webhook_secrets SET
                 sealed = (SELECT sealed FROM webhook_secrets WHERE webhook_id = '{b_id}'),
                 key_id = (SELECT key_id FROM webhook_secrets WHERE webhook_id = '{b_id}')
             WHERE webhook_id = '{a_id}'"
        ))
        .await;
    let event = app.publish(&project, "batch.succeeded", json!({})).await;
    app.deliver_due().await;
    let received = receiver.received();
    assert!(received.iter().all(|r| r.path == "/b"), "nothing went to /a");
    assert_eq!(received.len(), 1);
    let event = app.event(&project, &event).await;
    let to_a = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["webhook_id"] == a_id)
        .expect("the delivery to a")
        .clone();
    assert_eq!(to_a["last_attempt"]["error_kind"], "signing", "{to_a}");
    assert!(
        to_a["last_attempt"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("altered or moved")),
        "{to_a}"
    );
}

/// An Ed25519 webhook during the overlap: one `v1a` entry per live key,
/// each verifying with its public key; after the overlap only the new one.
#[tokio::test]
async fn an_ed25519_rotation_signs_with_both_keys_during_the_overlap() {
    use herald_signature::Ed25519PublicKey;
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let body = json!({ "uri": receiver.url("/ed"), "subscribed_events": ["*"], "signing": "ed25519" });
    let (status, ed) = app
        .call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ed}");
    let old = ed["signing_secrets"][0]["public_key"].as_str().unwrap().to_owned();
    let (_, rotated) = app
        .call(Method::POST, &rotate_path(&ed), Some(&project.key), None)
        .await;
    let new = rotated["public_key"].as_str().unwrap().to_owned();
    let verifies = |request: &Received, public_key: &str, at: i64| {
        Verifier::new(vec![TrustedKey::Ed25519(Ed25519PublicKey::parse(public_key).unwrap())])
            .verify_at(&request.headers, &request.body, at)
            .is_ok()
    };
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let at = app.clock_now().as_unix_seconds();
    let during = &receiver.received()[0];
    assert_eq!(during.header("webhook-signature").matches("v1a,").count(), 2);
    assert!(verifies(during, &old, at) && verifies(during, &new, at));
    app.advance(DAY);
    app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let at = app.clock_now().as_unix_seconds();
    let after = &receiver.received()[1];
    assert_eq!(after.header("webhook-signature").matches("v1a,").count(), 1);
    assert!(!verifies(after, &old, at) && verifies(after, &new, at));
}

#[test]
fn master_key_generate_prints_a_usable_key_and_its_id() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["master-key", "generate"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let key = herald::domain::secret::MasterKey::parse(&String::from_utf8(output.stdout).unwrap())
        .expect("stdout is a master key");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(key.id().as_str()), "{stderr}");
}
