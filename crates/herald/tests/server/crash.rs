//! At-least-once across crashes: publish a stream of events into the real
//! `herald` binary, SIGKILL it mid-stream (several times), restart it, and
//! check that every event it acknowledged reached the receiver.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Receiver, post_json as call};

const PUBLISHERS: usize = 8;
const ROUNDS: usize = 3;

struct Server {
    child: Child,
    base: String,
}

/// Starts `herald serve` on the data directory and waits for its address.
fn start_server(data_dir: &Path, database_url: Option<&str>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    if let Some(url) = database_url {
        command
            .env("HERALD_DATABASE_URL", url)
            .env("HERALD_MASTER_KEY", crate::support::backend::TEST_MASTER_KEY)
            .env("HERALD_NODE_NAME", "crash-test");
    }
    let mut child = command
        .arg("serve")
        .env("HERALD_DATA_DIR", data_dir)
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .env("HERALD_ALLOW_TARGET_CIDRS", "127.0.0.0/8")
        .env("HERALD_ADMIN_KEY", ADMIN_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("herald starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("herald printed its address")
            .expect("readable stdout");
        if let Some(address) = line.strip_prefix("herald listening on ") {
            break address.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill() {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = match crate::support::backend::backend() {
        crate::support::backend::Backend::Postgres => Some(crate::support::backend::fresh_database().await),
        crate::support::backend::Backend::Sqlite => None,
    };
    let receiver = Receiver::start().await;
    let http = reqwest::Client::new();

    let mut server = tokio::task::block_in_place(|| start_server(data_dir.path(), database_url.as_deref()));
    let project = call(
        &http,
        &server.base,
        "/v1/projects",
        ADMIN_KEY,
        json!({ "name": "crash" }),
    )
    .await;
    let key_path = format!("/v1/projects/{}/api_keys", project["id"].as_str().unwrap());
    let key = call(&http, &server.base, &key_path, ADMIN_KEY, json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = json!({ "uri": receiver.url("/"), "subscribed_events": ["*"] });
    call(&http, &server.base, "/v1/webhooks", &key, hook).await;

    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..ROUNDS {
        if round > 0 {
            server = tokio::task::block_in_place(|| start_server(data_dir.path(), database_url.as_deref()));
        }
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|publisher| {
                let (http, base, key, acknowledged) = (
                    http.clone(),
                    server.base.clone(),
                    key.clone(),
                    Arc::clone(&acknowledged),
                );
                tokio::spawn(async move {
                    for n in 0.. {
                        let body =
                            json!({ "type": "crash.test", "data": { "round": round, "publisher": publisher, "n": n } });
                        let Ok(response) = http
                            .post(format!("{base}/v1/events"))
                            .bearer_auth(&key)
                            .json(&body)
                            .send()
                            .await
                        else {
                            return;
                        };
                        if response.status() != 202 {
                            return;
                        }
                        let Ok(accepted) = response.json::<Value>().await else {
                            return;
                        };
                        acknowledged
                            .lock()
                            .unwrap()
                            .push(accepted["id"].as_str().unwrap().to_owned());
                    }
                })
            })
            .collect();
        // Kill mid-stream, with deliveries in flight behind the publishes.
        let target = (round + 1) * 400 + round * 37;
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.lock().unwrap().len() < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().expect("SIGKILL");
        server.child.wait().expect("reaped");
        for publisher in publishers {
            publisher.await.unwrap();
        }
    }

    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(
        acknowledged.len() >= ROUNDS * 400,
        "the stream ran: {} acknowledged",
        acknowledged.len()
    );
    let mut server = tokio::task::block_in_place(|| start_server(data_dir.path(), database_url.as_deref()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let seen: HashSet<String> = receiver
            .received()
            .iter()
            .map(|r| r.header("webhook-id").to_owned())
            .collect();
        let missing: Vec<&String> = acknowledged.iter().filter(|id| !seen.contains(*id)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut copies: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        *copies.entry(request.header("webhook-id").to_owned()).or_default() += 1;
    }
    let duplicates: usize = copies.values().map(|n| n - 1).sum();
    println!(
        "crash test: {} acknowledged over {ROUNDS} SIGKILLs, {} received, {duplicates} duplicate deliveries, {missing} missing",
        acknowledged.len(),
        receiver.count()
    );
    server.child.kill().ok();
    server.child.wait().ok();
    assert_eq!(missing, 0, "acknowledged events were lost");
}
