//! The scenarios and the result table.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;

use crate::Args;
use crate::load::{self, HttpClient};
use crate::receiver::Receiver;
use crate::server::{ADMIN_KEY, Herald, default_binary};

struct Table {
    rows: Vec<[String; 3]>,
}

impl Table {
    fn add(&mut self, metric: &str, value: String, note: &str) {
        println!("  {metric}: {value} {note}");
        self.rows.push([metric.to_owned(), value, note.to_owned()]);
    }

    fn print(&self) {
        let width = |i: usize| self.rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        let (w0, w1) = (width(0).max(6), width(1).max(5));
        println!("\n| {:w0$} | {:>w1$} | notes", "metric", "value");
        println!("|{}|{}|------", "-".repeat(w0 + 2), "-".repeat(w1 + 2));
        for [metric, value, note] in &self.rows {
            println!("| {metric:w0$} | {value:>w1$} | {note}");
        }
    }
}

/// A small, realistic thin event (ids and pointers, not results).
fn event(n: usize) -> serde_json::Value {
    json!({ "type": "batch.succeeded", "data": { "id": format!("batch_{n:08}"), "output_file_uri": "gs://bucket/results/batch.jsonl", "request_count": 1000 } })
}

fn event_bytes() -> Bytes {
    Bytes::from(event(1).to_string())
}

fn batch_bytes(size: usize) -> Bytes {
    let events: Vec<_> = (0..size).map(event).collect();
    Bytes::from(json!({ "events": events }).to_string())
}

/// One event per request, or `events:batchCreate` of `--batch-size`.
struct PublishShape {
    label: String,
    path: &'static str,
    body: Bytes,
    per_request: u64,
}

impl PublishShape {
    fn new(args: &Args, batch: bool) -> Self {
        if batch {
            Self {
                label: format!("batchCreate ×{}", args.batch_size),
                path: "/v1/events:batchCreate",
                body: batch_bytes(args.batch_size),
                per_request: args.batch_size as u64,
            }
        } else {
            Self {
                label: "single-event".to_owned(),
                path: "/v1/events",
                body: event_bytes(),
                per_request: 1,
            }
        }
    }
}

/// Starts Herald, makes a project, a key and one webhook to `target`.
async fn herald_with_webhook(
    args: &Args,
    client: &HttpClient,
    target: &str,
    extra: &[&str],
) -> anyhow::Result<(Herald, String)> {
    let binary = args.herald.clone().unwrap_or_else(default_binary);
    let mut herald_args = args.herald_args.clone();
    herald_args.extend(extra.iter().map(|s| (*s).to_owned()));
    let herald = tokio::task::block_in_place(|| Herald::start(&binary, &herald_args))?;
    let project = load::post_json(
        client,
        &format!("{}/v1/projects", herald.base),
        ADMIN_KEY,
        json!({ "name": "bench" }),
    )
    .await?;
    let keys = format!(
        "{}/v1/projects/{}/api_keys",
        herald.base,
        project["id"].as_str().context("project id")?
    );
    let key = load::post_json(client, &keys, ADMIN_KEY, json!({})).await?["key"]
        .as_str()
        .context("key")?
        .to_owned();
    let webhook = json!({ "uri": target, "subscribed_events": ["*"] });
    load::post_json(client, &format!("{}/v1/webhooks", herald.base), &key, webhook).await?;
    Ok((herald, key))
}

async fn wait_for_count(receiver: &Receiver, target: u64, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while receiver.count() < target {
        if started.elapsed() > limit {
            bail!(
                "only {} of {target} deliveries arrived within {limit:?}",
                receiver.count()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(started.elapsed())
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = load::client();
    let mut table = Table { rows: Vec::new() };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "herald-bench on {cpus} CPUs; publishers={} duration={:?}",
        args.publishers, args.duration
    );
    let mut ceiling = None;
    for scenario in args.scenarios.clone() {
        println!("== {scenario}");
        match scenario.as_str() {
            "ceiling" => ceiling = Some(raw_ceiling(&args, &client, &mut table).await?),
            "single" => throughput(&args, &client, &mut table, false, ceiling).await?,
            "batch" => throughput(&args, &client, &mut table, true, ceiling).await?,
            "latency" => latency(&args, &client, &mut table).await?,
            "sustained-single" => sustained(&args, &client, &mut table, false, ceiling).await?,
            "sustained-batch" => sustained(&args, &client, &mut table, true, ceiling).await?,
            "backlog" => backlog(&args, &client, &mut table).await?,
            other => bail!("unknown scenario {other}"),
        }
    }
    table.print();
    Ok(())
}

async fn raw_ceiling(args: &Args, client: &HttpClient, table: &mut Table) -> anyhow::Result<f64> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/", receiver.addr);
    // Herald's payload is the event plus its envelope: send a body of that size.
    let body = Bytes::from(format!(
        "{{\"id\":\"evt_01JH000000000000000000000\",\"type\":\"batch.succeeded\",\"version\":\"v1\",\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"data\":{}}}",
        event(1)["data"]
    ));
    let (count, elapsed) = load::closed_loop(client, &url, None, args.publishers, args.duration, body).await?;
    receiver.stop();
    let rate = count as f64 / elapsed.as_secs_f64();
    table.add(
        "raw HTTP ceiling (client → receiver, no Herald)",
        format!("{rate:.0} req/s"),
        &format!("{} connections", args.publishers),
    );
    Ok(rate)
}

async fn throughput(
    args: &Args,
    client: &HttpClient,
    table: &mut Table,
    batch: bool,
    ceiling: Option<f64>,
) -> anyhow::Result<()> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (herald, key) = herald_with_webhook(args, client, &format!("http://{}/", receiver.addr), &[]).await?;
    let shape = PublishShape::new(args, batch);
    let (label, body, per_request) = (shape.label, shape.body, shape.per_request);
    let url = format!("{}{}", herald.base, shape.path);
    let started = Instant::now();
    let (requests, elapsed) = load::closed_loop(client, &url, Some(&key), args.publishers, args.duration, body).await?;
    let delivered_in_window = receiver.count();
    let published = requests * per_request;
    let tail = wait_for_count(&receiver, published, Duration::from_secs(300)).await?;
    let total = started.elapsed();
    let (rss, peak) = herald.rss_mib()?;
    herald.stop();
    receiver.stop();
    let publish_rate = published as f64 / elapsed.as_secs_f64();
    let delivered_rate = delivered_in_window as f64 / elapsed.as_secs_f64();
    let overall = published as f64 / total.as_secs_f64();
    table.add(
        &format!("{label}: events published/s"),
        format!("{publish_rate:.0}"),
        "HTTP publish, durably committed before 202",
    );
    table.add(
        &format!("{label}: deliveries/s while publishing"),
        format!("{delivered_rate:.0}"),
        "signed POSTs received",
    );
    table.add(
        &format!("{label}: deliveries/s end to end"),
        format!("{overall:.0}"),
        &format!("{published} events, all delivered {tail:.1?} after publishing stopped"),
    );
    if let Some(ceiling) = ceiling {
        table.add(
            &format!("{label}: delivery rate / raw ceiling"),
            format!("{:.2}", overall / ceiling),
            "same client and receiver, same run",
        );
    }
    table.add(
        &format!("{label}: herald RSS (peak)"),
        format!("{rss:.0} MiB ({peak:.0})"),
        "",
    );
    Ok(())
}

/// Publishes at increasing fixed rates; a rate is sustained when deliveries
/// keep pace: at least 95% of the window's events are delivered within the
/// window, and the rest within one second after it. Reports each step and
/// the highest sustained rate.
async fn sustained(
    args: &Args,
    client: &HttpClient,
    table: &mut Table,
    batch: bool,
    ceiling: Option<f64>,
) -> anyhow::Result<()> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (herald, key) = herald_with_webhook(args, client, &format!("http://{}/", receiver.addr), &[]).await?;
    let shape = PublishShape::new(args, batch);
    let (label, body, per_request) = (shape.label, shape.body, shape.per_request as usize);
    let url = format!("{}{}", herald.base, shape.path);
    let mut best = None;
    for rate in args.rates.iter().copied() {
        let before = receiver.count();
        let requests = load::paced(
            client,
            &url,
            &key,
            rate as f64 / per_request as f64,
            args.duration,
            body.clone(),
        )
        .await?;
        let published = requests * per_request as u64;
        let in_window = receiver.count() - before;
        let tail = wait_for_count(&receiver, before + published, Duration::from_secs(300)).await?;
        let kept_up = tail <= Duration::from_secs(1) && in_window as f64 >= 0.95 * published as f64;
        let note = format!(
            "{:.0} delivered/s during the window, backlog cleared {tail:.1?} after; {}",
            in_window as f64 / args.duration.as_secs_f64(),
            if kept_up { "sustained" } else { "NOT sustained" }
        );
        table.add(
            &format!("{label}: offered {rate} events/s"),
            format!("{:.0}", published as f64 / args.duration.as_secs_f64()),
            &note,
        );
        if !kept_up {
            break;
        }
        best = Some(rate);
    }
    let (rss, peak) = herald.rss_mib()?;
    herald.stop();
    receiver.stop();
    let best = best.unwrap_or(0);
    let ratio = ceiling.map_or(String::new(), |c| {
        format!("; {:.2} of the raw HTTP ceiling", best as f64 / c)
    });
    table.add(
        &format!("{label}: highest sustained rate"),
        format!("{best} events/s"),
        &format!("published and delivered{ratio}; RSS {rss:.0} MiB (peak {peak:.0})"),
    );
    Ok(())
}

async fn latency(args: &Args, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    receiver.counters.track.store(true, Ordering::Relaxed);
    let (herald, key) = herald_with_webhook(args, client, &format!("http://{}/", receiver.addr), &[]).await?;
    let url = format!("{}/v1/events", herald.base);
    let sent = load::open_loop(client, &url, &key, args.rate, args.duration, event_bytes()).await?;
    wait_for_count(&receiver, sent.len() as u64, Duration::from_secs(120)).await?;
    herald.stop();
    let arrivals = receiver
        .counters
        .arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    receiver.stop();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(start, _, id)| {
            arrivals
                .get(id)
                .map(|arrived| arrived.saturating_duration_since(*start))
        })
        .collect();
    let mut acks: Vec<Duration> = sent
        .iter()
        .map(|(start, acked, _)| acked.saturating_duration_since(*start))
        .collect();
    acks.sort();
    if latencies.len() != sent.len() {
        bail!(
            "{} of {} events never arrived",
            sent.len() - latencies.len(),
            sent.len()
        );
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let note = format!("{} events at {}/s", latencies.len(), args.rate);
    table.add(
        "publish→receive latency p50",
        format!("{:.2} ms", at(0.50).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        "publish→receive latency p90",
        format!("{:.2} ms", at(0.90).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        "publish→receive latency p99",
        format!("{:.2} ms", at(0.99).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        "publish→receive latency max",
        format!("{:.2} ms", at(1.0).as_secs_f64() * 1e3),
        &note,
    );
    let ack = |q: f64| acks[((acks.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    table.add(
        "publish → 202 (durable commit) p50 / p99",
        format!("{:.2} / {:.2} ms", ack(0.5), ack(0.99)),
        "the producer's wait, fsync included",
    );
    Ok(())
}

async fn metric(client: &HttpClient, base: &str, name: &str) -> anyhow::Result<f64> {
    use http_body_util::BodyExt;
    let response = client.get(format!("{base}/metrics").parse()?).await?;
    let text = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .with_context(|| format!("metric {name} missing"))
}

async fn backlog(args: &Args, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    // An endpoint that refuses connections: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    // Retry every 5 s (no jitter) so the backlog is due again as soon as the
    // endpoint returns; the default schedule would wait minutes to hours.
    let schedule = vec!["5s"; 100].join(",");
    let (herald, key) = herald_with_webhook(
        args,
        client,
        &format!("http://{target}/"),
        &["--retry-schedule", &schedule],
    )
    .await?;
    let url = format!("{}/v1/events:batchCreate", herald.base);
    let batch = 1000.min(args.pending);
    let body = batch_bytes(batch);
    let started = Instant::now();
    let requests = args.pending / batch;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, key, body) = (client.clone(), url.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for _ in (worker..requests).step_by(8) {
                let (status, answer) = load::post(&client, &url, Some(&key), body.clone()).await?;
                if status.as_u16() != 202 {
                    bail!("batch publish answered {status}: {}", String::from_utf8_lossy(&answer));
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let published = (requests * batch) as f64;
    let publish_time = started.elapsed();
    let mut peak = 0.0f64;
    loop {
        let retrying = metric(client, &herald.base, "herald_deliveries_retrying").await?;
        peak = peak.max(herald.rss_mib()?.0);
        if retrying >= published {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("first attempts did not finish: {retrying} of {published}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let first_attempts = started.elapsed();
    let (rss, hwm) = herald.rss_mib()?;
    table.add(
        "backlog: events published/s (batchCreate ×1000)",
        format!("{:.0}", published / publish_time.as_secs_f64()),
        "endpoint down",
    );
    table.add(
        "backlog: failed first attempts/s",
        format!("{:.0}", published / first_attempts.as_secs_f64()),
        "connection refused, each logged",
    );
    table.add(
        &format!("backlog: herald RSS with {} pending", published as u64),
        format!("{rss:.0} MiB"),
        &{
            let (db, wal) = herald.disk_mib();
            format!("peak {hwm:.0} MiB; database {db:.0} MiB + WAL {wal:.0} MiB on disk")
        },
    );
    let receiver = Receiver::start(target).await?;
    // Retries fall due over the next 5 s; time the drain from the first arrival.
    let until_first = wait_for_count(&receiver, 1, Duration::from_secs(60)).await?;
    let drain = wait_for_count(&receiver, published as u64, Duration::from_secs(1800)).await?;
    let (rss_after, _) = herald.rss_mib()?;
    herald.stop();
    receiver.stop();
    table.add(
        "backlog: drain rate once the endpoint is back",
        format!("{:.0} deliveries/s", published / drain.as_secs_f64()),
        &format!(
            "{} in {drain:.1?} from the first arrival ({until_first:.1?} after the endpoint returned); RSS after {rss_after:.0} MiB",
            published as u64
        ),
    );
    Ok(())
}
