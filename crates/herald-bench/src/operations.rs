//! Scenarios of long-running operations:
//!
//! - `operations`: workers drive operations through their whole life over
//!   HTTP (create with a per-job webhook → `:start` → `:complete`), back to
//!   back; the rate of lifecycles, and of lifecycles whose two events
//!   (`operation.running`, `operation.succeeded`) reached the job's
//!   webhook, signed `v1a` with Herald's keys;
//! - `waits`: 10,000 concurrent `:wait` long-polls on 10,000 running
//!   operations: Herald's extra RSS and CPU while they wait, and how fast
//!   they all return once their operations complete.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request};
use serde_json::json;

use crate::load::{self, HttpClient};
use crate::receiver::Receiver;
use crate::scenarios::{On, Table, wait_for_count};

async fn create(client: &HttpClient, base: &str, key: &str, hook: Option<&str>) -> anyhow::Result<String> {
    let body = match hook {
        Some(hook) => json!({ "kind": "bench", "webhook_config": { "uris": [hook] } }),
        None => json!({ "kind": "bench" }),
    };
    let op = load::post_json(client, &format!("{base}/v1/operations"), key, body).await?;
    Ok(op["id"].as_str().context("operation id")?.to_owned())
}

async fn verb(
    client: &HttpClient,
    base: &str,
    key: &str,
    id: &str,
    verb: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    load::post_json(client, &format!("{base}/v1/operations/{id}:{verb}"), key, body).await?;
    Ok(())
}

pub async fn lifecycles(on: &On<'_>, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let to_project = on.args.operations_to_project_webhook;
    // Per-job: the project's webhook goes elsewhere (and must get nothing).
    let hook = (!to_project).then(|| format!("http://{}/job", receiver.addr));
    let project_hook = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let project_target = if to_project { receiver.addr } else { project_hook.addr };
    let deployment = on.herald(client, &format!("http://{project_target}/"), &[]).await?;
    let bases: Vec<String> = deployment.urls("");
    let key = deployment.key.clone();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = deployment.cpu();
    let started = Instant::now();
    let tasks: Vec<_> = (0..on.args.publishers)
        .map(|worker| {
            let base = bases[worker % bases.len()].clone();
            let (client, key, hook) = (client.clone(), key.clone(), hook.clone());
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let name = format!("w{worker}");
                while !stop.load(Ordering::Relaxed) {
                    let id = create(&client, &base, &key, hook.as_deref()).await?;
                    verb(&client, &base, &key, &id, "start", json!({ "worker": name })).await?;
                    verb(
                        &client,
                        &base,
                        &key,
                        &id,
                        "complete",
                        json!({ "worker": name, "response": { "ok": true } }),
                    )
                    .await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(on.args.duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    let driven = started.elapsed();
    let lifecycles = done.load(Ordering::Relaxed);
    let drain = wait_for_count(&receiver, 2 * lifecycles, Duration::from_secs(300)).await?;
    let delivered = driven + drain;
    let cpu = deployment.cpu().saturating_sub(cpu_before);
    let prefix = on.backend.prefix();
    table.add(
        &format!("{prefix}operation lifecycles over HTTP (create → start → complete)"),
        format!("{:.0}/s", lifecycles as f64 / driven.as_secs_f64()),
        &format!(
            "{lifecycles} in {driven:.1?}, {} workers, 3 requests each",
            on.args.publishers
        ),
    );
    table.add(
        &format!(
            "{prefix}lifecycles delivered to {} (2 events each)",
            if to_project {
                "the project's webhook (v1)"
            } else {
                "their per-job webhook (v1a)"
            }
        ),
        format!("{:.0}/s", lifecycles as f64 / delivered.as_secs_f64()),
        &format!(
            "last delivery {drain:.1?} after the last lifecycle; Herald CPU {:.2} cores{}",
            cpu.as_secs_f64() / delivered.as_secs_f64(),
            if to_project {
                String::new()
            } else {
                format!("; the project's webhook got {}", project_hook.count())
            }
        ),
    );
    deployment.stop(on.postgres()).await?;
    receiver.stop();
    project_hook.stop();
    Ok(())
}

/// A GET that returns its status and body (a `:wait`).
async fn get(client: &HttpClient, url: &str, key: &str) -> anyhow::Result<(u16, Bytes)> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("authorization", format!("Bearer {key}"))
        .body(http_body_util::Full::new(Bytes::new()))?;
    let response = client.request(request).await.context("request")?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

pub async fn waits(on: &On<'_>, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    const WAITERS: usize = 10_000;
    let config = tempfile::NamedTempFile::new()?;
    std::fs::write(
        config.path(),
        "[http]\nmax_connections = 12000\nrequest_timeout = \"120s\"\nidle_timeout = \"180s\"\n",
    )?;
    let config_path = config.path().display().to_string();
    let project_hook = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let deployment = on
        .herald(
            client,
            &format!("http://{}/", project_hook.addr),
            &["--config", &config_path],
        )
        .await?;
    let base = deployment.base().to_owned();
    let key = deployment.key.clone();
    // 10,000 running operations (64 at a time).
    let mut ids = Vec::with_capacity(WAITERS);
    for chunk in (0..WAITERS).collect::<Vec<_>>().chunks(64) {
        let made = futures_join(chunk.iter().map(|_| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            async move {
                let body = json!({ "kind": "bench" });
                let op = load::post_json(&client, &format!("{base}/v1/operations"), &key, body).await?;
                let id = op["id"].as_str().context("id")?.to_owned();
                verb(
                    &client,
                    &base,
                    &key,
                    &id,
                    "start",
                    json!({ "worker": "w", "lease_duration": "1h" }),
                )
                .await?;
                anyhow::Ok(id)
            }
        }))
        .await?;
        ids.extend(made);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, _) = deployment.rss_mib()?;
    let cpu_before = deployment.cpu();
    // Each waiter on its own connection (HTTP/1.1), as separate clients would.
    let waiting = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let url = format!("{base}/v1/operations/{id}:wait?timeout=100s");
            let key = key.clone();
            let waiting = Arc::clone(&waiting);
            tokio::spawn(async move {
                let client = waiter_client();
                waiting.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                let (status, body) = get(&client, &url, &key).await?;
                if status != 200 || !body.windows(11).any(|w| w == b"\"done\":true") {
                    bail!("a wait answered {status}: {}", String::from_utf8_lossy(&body));
                }
                anyhow::Ok(started.elapsed())
            })
        })
        .collect();
    // Let every waiter connect and register, then measure the quiet period.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let quiet_started = Instant::now();
    let cpu_quiet_start = deployment.cpu();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let quiet_cpu = deployment.cpu().saturating_sub(cpu_quiet_start);
    let quiet = quiet_started.elapsed();
    let (rss_waiting, _) = deployment.rss_mib()?;
    let _ = cpu_before;
    // Complete them all; every wait must return done.
    let release_started = Instant::now();
    for chunk in ids.chunks(64) {
        futures_join(chunk.iter().map(|id| {
            let (client, base, key, id) = (client.clone(), base.clone(), key.clone(), id.clone());
            async move { verb(&client, &base, &key, &id, "complete", json!({ "response": {} })).await }
        }))
        .await?;
    }
    for task in tasks {
        task.await??;
    }
    let released = release_started.elapsed();
    let prefix = on.backend.prefix();
    table.add(
        &format!("{prefix}10,000 concurrent :wait long-polls: extra RSS"),
        format!("{:.1} MiB", rss_waiting - rss_before),
        &format!("{rss_before:.1} MiB before, {rss_waiting:.1} MiB while waiting (one connection each)"),
    );
    table.add(
        &format!("{prefix}10,000 concurrent :wait long-polls: Herald CPU while nothing changes"),
        format!("{:.3} cores", quiet_cpu.as_secs_f64() / quiet.as_secs_f64()),
        &format!(
            "over {quiet:.1?} ({} waiters registered); then all 10,000 completed and answered in {released:.1?}",
            waiting.load(Ordering::Relaxed)
        ),
    );
    deployment.stop(on.postgres()).await?;
    project_hook.stop();
    Ok(())
}

/// A client of its own per waiter: one connection each, like 10,000
/// separate clients.
fn waiter_client() -> HttpClient {
    load::client()
}

/// Runs the futures concurrently and collects their results in order.
async fn futures_join<T, F>(futures: impl Iterator<Item = F>) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let results = futures_util::future::join_all(futures).await;
    results.into_iter().collect()
}
