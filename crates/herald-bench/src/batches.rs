//! `batches`: an OpenAI-compatible batch of N requests against
//! `builtin:echo` with zero latency (so Herald's own cost is measured):
//! upload, create, and the time from create to `completed` (requests
//! executed and persisted per second), the output download rate, and the
//! peak RSS of the Herald process (memory should not grow with N).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};

use crate::load::{self, HttpClient};
use crate::server::{ADMIN_KEY, Herald};

/// One row of the results table: metric, value, note.
pub type Row = (String, String, String);

async fn get(client: &HttpClient, url: &str, key: &str) -> anyhow::Result<Bytes> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::new()))?;
    let response = client.request(request).await.context("request")?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

fn input(requests: usize) -> Vec<u8> {
    let mut text = Vec::with_capacity(requests * 160);
    for i in 0..requests {
        text.extend_from_slice(
            format!(
                r#"{{"custom_id":"r{i}","method":"POST","url":"/v1/chat/completions","body":{{"model":"bench","messages":[{{"role":"user","content":"hello {i}"}}]}}}}"#
            )
            .as_bytes(),
        );
        text.push(b'\n');
    }
    text
}

pub async fn run(binary: &std::path::Path, extra: &[String], client: &HttpClient, requests: usize) -> anyhow::Result<Vec<Row>> {
    let config_dir = tempfile::tempdir()?;
    let config = config_dir.path().join("herald.toml");
    std::fs::write(
        &config,
        format!(
            "[batches]\nmax_requests_per_batch = {requests}\nmax_file_bytes = {}\nmax_in_flight = 1024\n\
             idle_poll = \"50ms\"\n\n[http]\nrequest_timeout = \"10m\"\nidle_timeout = \"11m\"\n",
            requests * 200 + 1024
        ),
    )?;
    let mut args = vec!["--config".to_owned(), config.display().to_string()];
    args.extend(extra.iter().cloned());
    let herald = Herald::start(binary, &args)?;
    let base = herald.base.clone();
    let project = load::post_json(client, &format!("{base}/v1/projects"), ADMIN_KEY, serde_json::json!({"name": "bench"})).await?;
    let key_url = format!("{base}/v1/projects/{}/api_keys", project["id"].as_str().context("project id")?);
    let key = load::post_json(client, &key_url, ADMIN_KEY, serde_json::json!({})).await?["key"]
        .as_str()
        .context("key")?
        .to_owned();

    let content = input(requests);
    let mut form = b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n".to_vec();
    form.extend_from_slice(&content);
    form.extend_from_slice(b"\r\n--b--\r\n");
    let input_bytes = content.len();
    drop(content);
    let started = Instant::now();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/files"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Full::new(Bytes::from(form)))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("upload: {status}: {}", String::from_utf8_lossy(&body));
    }
    let upload_time = started.elapsed();
    let file: serde_json::Value = serde_json::from_slice(&body)?;

    let started = Instant::now();
    let batch = load::post_json(
        client,
        &format!("{base}/v1/batches"),
        &key,
        serde_json::json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    )
    .await?;
    let url = format!("{base}/v1/batches/{}", batch["id"].as_str().context("batch id")?);
    let mut peak_rss = 0.0f64;
    let done = loop {
        let current: serde_json::Value = serde_json::from_slice(&get(client, &url, &key).await?)?;
        peak_rss = peak_rss.max(herald.rss_mib()?.0);
        match current["status"].as_str() {
            Some("completed") => break current,
            Some("failed" | "expired" | "cancelled") => bail!("the batch ended {current}"),
            _ if started.elapsed() > Duration::from_secs(3600) => bail!("the batch did not finish in an hour"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let run_time = started.elapsed();
    let completed = done["request_counts"]["completed"].as_u64().unwrap_or(0);
    if completed != requests as u64 {
        bail!("{completed} of {requests} completed: {done}");
    }
    let started = Instant::now();
    let output_url = format!("{base}/v1/files/{}/content", done["output_file_id"].as_str().context("output file")?);
    let output = get(client, &output_url, &key).await?;
    let download = started.elapsed();
    let (_, hwm) = herald.rss_mib()?;
    let (db, wal) = herald.disk_mib();
    herald.stop();
    let mib = |bytes: usize| bytes as f64 / 1048576.0;
    Ok(vec![
        (
            format!("batch of {requests}: upload"),
            format!("{:.0} MiB/s", mib(input_bytes) / upload_time.as_secs_f64()),
            format!("{:.1} MiB in {upload_time:.2?}", mib(input_bytes)),
        ),
        (
            format!("batch of {requests}: create → completed"),
            format!("{:.0} requests/s", requests as f64 / run_time.as_secs_f64()),
            format!("{run_time:.2?} (validated, executed against builtin:echo, persisted, output written)"),
        ),
        (
            format!("batch of {requests}: output download"),
            format!("{:.0} MiB/s", mib(output.len()) / download.as_secs_f64()),
            format!("{:.1} MiB in {download:.2?}", mib(output.len())),
        ),
        (
            format!("batch of {requests}: herald peak RSS"),
            format!("{hwm:.0} MiB"),
            format!("max sampled while running {peak_rss:.0} MiB; database {db:.0} MiB + WAL {wal:.0} MiB"),
        ),
    ])
}
