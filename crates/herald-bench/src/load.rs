//! Load generation with one pooled hyper client: closed loops (N workers
//! sending back to back) and an open loop at a fixed rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build(connector)
}

pub async fn post(
    client: &HttpClient,
    url: &str,
    key: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = client
        .request(request.body(Full::new(body))?)
        .await
        .context("request")?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .context("response body")?
        .to_bytes();
    Ok((status, body))
}

pub async fn post_json(
    client: &HttpClient,
    url: &str,
    key: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let (status, body) = post(client, url, Some(key), Bytes::from(body.to_string())).await?;
    if !status.is_success() {
        bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `workers` tasks send `body` back to back for `duration`, worker `i` to
/// `urls[i % urls.len()]` (one Herald node or several); returns how many
/// got a 2xx and how long it took.
pub async fn closed_loop(
    client: &HttpClient,
    urls: &[String],
    key: Option<&str>,
    workers: usize,
    duration: Duration,
    body: Bytes,
) -> anyhow::Result<(u64, Duration)> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let url = urls[worker % urls.len()].clone();
            let (client, key, body) = (client.clone(), key.map(str::to_owned), body.clone());
            let (ok, failed, stop) = (Arc::clone(&ok), Arc::clone(&failed), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match post(&client, &url, key.as_deref(), body.clone()).await {
                        Ok((status, _)) if status.is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed();
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        bail!("{failures} requests to {} failed", urls.join(", "));
    }
    Ok((ok.load(Ordering::Relaxed), elapsed))
}

/// Sends one publish every `1/rate` for `duration`, each in its own task,
/// the `n`th to `urls[n % urls.len()]`, and returns (publish start, 202
/// received, event id) for every accepted event, and the refusals (any
/// answer but 202) with the first one.
pub async fn open_loop(
    client: &HttpClient,
    urls: &[String],
    key: &str,
    rate: u32,
    duration: Duration,
    body: Bytes,
) -> anyhow::Result<(Vec<(Instant, Instant, String)>, u64, Option<String>)> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (duration.as_secs_f64() * f64::from(rate)) as usize;
    let mut tasks = Vec::with_capacity(total);
    for n in 0..total {
        ticker.tick().await;
        let url = urls[n % urls.len()].clone();
        let (client, key, body) = (client.clone(), key.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let (status, answer) = post(&client, &url, Some(&key), body).await?;
            if status != StatusCode::ACCEPTED {
                return Ok(Err(format!("{status}: {}", String::from_utf8_lossy(&answer))));
            }
            let accepted: serde_json::Value = serde_json::from_slice(&answer)?;
            let id = accepted["id"].as_str().context("event id")?.to_owned();
            Ok::<_, anyhow::Error>(Ok((started, Instant::now(), id)))
        }));
    }
    let mut sent = Vec::with_capacity(total);
    let (mut refused, mut first_refusal) = (0, None);
    for task in tasks {
        match task.await?? {
            Ok(event) => sent.push(event),
            Err(refusal) => {
                refused += 1;
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    Ok((sent, refused, first_refusal))
}

/// Sends `requests_per_second` requests for `duration` from `PACED_WORKERS`
/// connections (worker `i` to `urls[i % urls.len()]`). Each worker follows
/// its own fixed schedule and, when it falls behind (a slow answer), sends
/// back to back until it catches up: the offered rate does not drop because
/// the server slows down, and connections stay bounded. Returns how many were answered 2xx; any other
/// answer is an error.
pub async fn paced(
    client: &HttpClient,
    urls: &[String],
    key: &str,
    requests_per_second: f64,
    duration: Duration,
    body: Bytes,
) -> anyhow::Result<Paced> {
    const PACED_WORKERS: usize = 128;
    let total = (requests_per_second * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(PACED_WORKERS as f64 / requests_per_second);
    let start = tokio::time::Instant::now();
    let give_up = start + duration * 2 + Duration::from_secs(5);
    let workers: Vec<_> = (0..PACED_WORKERS as u64)
        .map(|worker| {
            let url = urls[worker as usize % urls.len()].clone();
            let (client, key, body) = (client.clone(), key.to_owned(), body.clone());
            tokio::spawn(async move {
                let offset = interval.mul_f64(worker as f64 / PACED_WORKERS as f64);
                let mut outcome = Paced::default();
                for (n, _) in (worker..total).step_by(PACED_WORKERS).enumerate() {
                    if tokio::time::Instant::now() > give_up {
                        outcome.unsent += 1;
                        continue;
                    }
                    tokio::time::sleep_until(start + offset + interval * n as u32).await;
                    let (status, answer) = post(&client, &url, Some(&key), body.clone()).await?;
                    if status.is_success() {
                        outcome.ok += 1;
                    } else {
                        outcome.refused += 1;
                        outcome
                            .first_refusal
                            .get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&answer)));
                    }
                }
                Ok::<_, anyhow::Error>(outcome)
            })
        })
        .collect();
    let mut total = Paced::default();
    for worker in workers {
        let outcome = worker.await??;
        total.ok += outcome.ok;
        total.refused += outcome.refused;
        total.unsent += outcome.unsent;
        if total.first_refusal.is_none() {
            total.first_refusal = outcome.first_refusal;
        }
    }
    Ok(total)
}

/// What a paced run got back.
#[derive(Debug, Default)]
pub struct Paced {
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests answered anything else.
    pub refused: u64,
    pub first_refusal: Option<String>,
    /// Requests given up on: the server was too far behind.
    pub unsent: u64,
}
