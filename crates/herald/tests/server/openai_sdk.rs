//! The official openai Python SDK against a live Herald: files and batches
//! (upload, create, poll, download, list, cancel) with nothing set but
//! `base_url` and `api_key`, and `client.webhooks.unwrap` verifying a
//! `batch.completed` delivery Herald made. The SDK is pinned and installed
//! into a venv under the target directory on first use; a missing
//! `python3` or PyPI fails the test with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use herald::clock::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};

use crate::support::{Receiver, TestApp, test_config};

const SDK: &str = "openai==3.57.0";

/// One venv per test binary, so `server` and `server_postgres` never
/// install into the same directory at once.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("openai-venv-{}", env!("CARGO_CRATE_NAME")));
    let marker = venv.join("installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(SDK) {
        return venv.join("bin/python");
    }
    let run = |command: &mut Command| {
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        assert!(
            output.status.success(),
            "{command:?} failed (the openai test needs python3 with venv and PyPI): {}",
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
    ]));
    std::fs::write(&marker, SDK).expect("marker written");
    venv.join("bin/python")
}

fn run_sdk(input: Value) -> Value {
    crate::support::python::run_json_script(&python(), "openai_batches.py", &input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_runs_a_batch_and_unwraps_its_webhook() {
    // Live: the engine and dispatcher run by themselves, and the clock is
    // the wall clock's now (the SDK checks webhook-timestamp against it).
    let data_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let mut config = test_config(data_dir.path());
    config.batches.idle_poll = Duration::from_millis(50);
    config.delivery.idle_poll = Duration::from_millis(50);
    // Slow enough that the second batch is still running when cancelled.
    config.batches.echo_latency = Duration::from_millis(1500);
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = TestApp::start(config, data_dir, clock, true).await;
    let receiver = Receiver::start().await;
    let project = app.project("sdk").await;
    let webhook = app
        .webhook(&project, &receiver.url("/hook"), &["batch.completed"])
        .await;
    let secret = webhook["new_signing_secret"].as_str().unwrap().to_owned();

    let input = json!({"mode": "client", "base_url": app.base, "key": project.key});
    let out = tokio::task::spawn_blocking(move || run_sdk(input))
        .await
        .expect("joined");
    assert_eq!(out["status"], "completed", "{out}");
    assert_eq!(out["counts"], json!({"total": 3, "completed": 3, "failed": 0}));
    assert_eq!(out["metadata"], json!({"origin": "sdk"}));
    assert_eq!(out["output_custom_ids"], json!(["sdk-1", "sdk-2", "sdk-3"]));
    assert_eq!(out["output_contents"], json!(["say 1", "say 2", "say 3"]));
    assert_eq!(out["file_purpose"], "batch");
    assert_eq!(
        out["listed"],
        json!([out["second_id"], out["batch_id"]]),
        "newest first: {out}"
    );
    assert_eq!(out["cancel_answer"], "cancelling", "{out}");
    assert_eq!(out["cancel_status"], "cancelled", "{out}");

    let deliveries = receiver.wait_for(1, Duration::from_secs(20)).await;
    let delivery = &deliveries[0];
    assert_eq!(delivery.json()["type"], "batch.completed");
    let headers: serde_json::Map<String, Value> = delivery
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    let input = json!({
        "mode": "unwrap",
        "body": String::from_utf8(delivery.body.to_vec()).unwrap(),
        "headers": headers,
        "secret": secret,
    });
    let unwrapped = tokio::task::spawn_blocking(move || run_sdk(input))
        .await
        .expect("joined");
    assert_eq!(unwrapped["type"], "batch.completed", "{unwrapped}");
    assert_eq!(unwrapped["data_id"], out["batch_id"], "{unwrapped}");
    assert_eq!(unwrapped["class"], "BatchCompletedWebhookEvent", "{unwrapped}");
    assert_eq!(unwrapped["tampered"], "InvalidWebhookSignatureError", "{unwrapped}");
}
