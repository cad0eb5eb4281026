//! A batch survives SIGKILL: the real `herald` binary runs a batch against
//! a slow upstream, is killed mid-batch, restarts, and finishes it; only
//! requests whose result had not been committed are sent again (each
//! with the same `Idempotency-Key`), and the output holds every request
//! once, in input order.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Receiver, Reply, post_json as call};

const REQUESTS: usize = 300;
const CONCURRENCY: usize = 4;

struct Server {
    child: Child,
    base: String,
}

fn start_server(data_dir: &Path, config: &Path, database_url: Option<&str>) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    if let Some(url) = database_url {
        command.env("HERALD_DATABASE_URL", url);
    }
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("HERALD_NODE_NAME", "batch-crash-test")
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
        let line = lines.next().expect("herald printed its address").expect("readable stdout");
        if let Some(address) = line.strip_prefix("herald listening on ") {
            break address.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

async fn get(http: &reqwest::Client, base: &str, path: &str, key: &str) -> reqwest::Response {
    http.get(format!("{base}{path}")).bearer_auth(key).send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_killed_mid_way_resumes_without_repeating_committed_requests() {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = match crate::support::backend::backend() {
        crate::support::backend::Backend::Postgres => Some(crate::support::backend::fresh_database().await),
        crate::support::backend::Backend::Sqlite => None,
    };
    let upstream = Receiver::start().await;
    upstream.always(
        Reply::status(200)
            .with_body(r#"{"object":"chat.completion","choices":[]}"#)
            .after(Duration::from_millis(15)),
    );
    let config = data_dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[batches]\necho_upstream = false\nidle_poll = \"100ms\"\n\n[[upstreams]]\nname = \"slow\"\n\
             base_url = \"http://{}\"\nmax_concurrency = {CONCURRENCY}\ntimeout = \"10s\"\n",
            upstream.addr
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut server = tokio::task::block_in_place(|| start_server(data_dir.path(), &config, database_url.as_deref()));
    let project = call(&http, &server.base, "/v1/projects", ADMIN_KEY, json!({ "name": "crash" })).await;
    let key_path = format!("/v1/projects/{}/api_keys", project["id"].as_str().unwrap());
    let key = call(&http, &server.base, &key_path, ADMIN_KEY, json!({})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut input = String::new();
    for i in 0..REQUESTS {
        let line = json!({"custom_id": format!("k{i:04}"), "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}});
        input.push_str(&format!("{line}\n"));
    }
    let form = format!(
        "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\nContent-Disposition: form-data; \
         name=\"file\"; filename=\"in.jsonl\"\r\n\r\n{input}\r\n--b--\r\n"
    );
    let file: Value = http
        .post(format!("{}/v1/files", server.base))
        .bearer_auth(&key)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let batch = call(&http, &server.base, "/v1/batches", &key, body).await;
    let path = format!("/v1/batches/{}", batch["id"].as_str().unwrap());

    let deadline = Instant::now() + Duration::from_secs(60);
    while upstream.count() < REQUESTS / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    let sent_before = upstream.count();
    assert!(sent_before < REQUESTS, "killed mid-batch: {sent_before} sent");

    server = tokio::task::block_in_place(|| start_server(data_dir.path(), &config, database_url.as_deref()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let current: Value = get(&http, &server.base, &path, &key).await.json().await.unwrap();
        if current["status"] == "completed" || Instant::now() > deadline {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"], json!({"total": REQUESTS, "completed": REQUESTS, "failed": 0}));
    let output_path = format!("/v1/files/{}/content", done["output_file_id"].as_str().unwrap());
    let output = get(&http, &server.base, &output_path, &key).await.text().await.unwrap();
    let ids: Vec<String> = output
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["custom_id"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..REQUESTS).map(|i| format!("k{i:04}")).collect();
    assert_eq!(ids, expected, "every request once, in input order");

    let mut copies: HashMap<String, usize> = HashMap::new();
    for request in upstream.received() {
        *copies.entry(request.header("idempotency-key").to_owned()).or_default() += 1;
    }
    let repeated: usize = copies.values().map(|n| n - 1).sum();
    println!(
        "batch crash test: {sent_before} sent before SIGKILL, {} in all, {repeated} sent twice",
        upstream.count()
    );
    assert_eq!(copies.len(), REQUESTS);
    // Only requests in flight or awaiting their commit at the kill repeat:
    // at most two rounds of the upstream's concurrency.
    assert!(repeated <= 2 * CONCURRENCY, "{repeated} requests were sent twice");
    server.child.kill().ok();
    server.child.wait().ok();
}
