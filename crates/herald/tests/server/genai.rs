//! The official google-genai Python SDK's `client.webhooks` against a live
//! Herald: create, list, get, update, ping, rotate the signing secret, delete with nothing set but
//! `base_url` and `api_key` (sent as `x-goog-api-key`). The SDK is pinned
//! and installed into a venv under the target directory on first use; a
//! missing `python3` or PyPI fails the test with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp};

const SDK: &str = "google-genai==3.6.1";
/// The independent Standard Webhooks verifier the secret-rotation tests use.
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.1.0";

/// One venv per test binary (`server`, `server_postgres`), so the two
/// binaries never install into the same directory at once.
pub(crate) fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("genai-venv-{}", env!("CARGO_CRATE_NAME")));
    let marker = venv.join("installed");
    let packages = format!("{SDK} {STANDARD_WEBHOOKS}");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(packages.as_str()) {
        return venv.join("bin/python");
    }
    let run = |command: &mut Command| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed (the google-genai test needs python3 with venv and PyPI): {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    run(Command::new(venv.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        SDK,
        STANDARD_WEBHOOKS,
    ]));
    std::fs::write(&marker, &packages).expect("marker written");
    venv.join("bin/python")
}

fn run_sdk(input: Value) -> Value {
    crate::support::python::run_json_script(&python(), "genai_webhooks.py", &input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_google_genai_sdk_manages_webhooks() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::status(200));
    let project = app.project("acme").await;
    let input = json!({
        "base_url": format!("http://{}", app.running().addr),
        "key": project.key,
        "uri": receiver.url("/hook"),
    });
    let out = tokio::task::spawn_blocking(move || run_sdk(input))
        .await
        .expect("joined");
    let id = out["created_id"].as_str().expect("created");
    assert!(out["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{out}");
    assert_eq!(out["listed_ids"], json!([id]));
    assert_eq!(out["fetched_name"], "sdk");
    assert_eq!(out["updated_name"], "renamed");
    assert_eq!(receiver.count(), 1, "the ping arrived: {out}");
    assert_eq!(receiver.received()[0].json()["type"], "webhook.ping");
    let rotated = out["rotated_secret"].as_str().expect("a new secret");
    assert!(
        rotated.starts_with("whsec_") && Some(rotated) != out["secret"].as_str(),
        "{out}"
    );
    let overlap = out["secrets_during_overlap"].as_array().expect("secrets");
    assert_eq!(overlap.len(), 2, "old and new sign for a day: {out}");
    assert!(
        overlap[0]["expire_time"].is_null() && overlap[1]["expire_time"].is_string(),
        "{out}"
    );
    assert!(rotated.starts_with(overlap[0]["truncated_secret"].as_str().unwrap().trim_end_matches('…')));
    let revoked = out["revoked_secret"].as_str().expect("a new secret");
    let after = out["secrets_after"].as_array().expect("secrets");
    assert_eq!(after.len(), 1, "revoked immediately: only the newest signs: {out}");
    assert!(revoked.starts_with(after[0]["truncated_secret"].as_str().unwrap().trim_end_matches('…')));
    let path = format!("/v1/webhooks/{id}");
    assert_eq!(
        app.call(reqwest::Method::GET, &path, Some(&project.key), None).await.0,
        404,
        "deleted"
    );
}
