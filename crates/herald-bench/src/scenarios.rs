//! The scenarios and the result table.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;

use crate::load::{self, HttpClient};
use crate::pg::{Admin, WaitSampler};
use crate::receiver::Receiver;
use crate::server::{ADMIN_KEY, Herald, cpu_of, cpu_of_all, default_binary};
use crate::{Args, Backend};

pub(crate) struct Table {
    rows: Vec<[String; 3]>,
}

impl Table {
    pub(crate) fn add(&mut self, metric: &str, value: String, note: &str) {
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

pub(crate) fn batch_bytes(size: usize) -> Bytes {
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

/// The Herald under test: one node (SQLite, or PostgreSQL) or several
/// sharing one PostgreSQL database, with a project, a key and one webhook.
pub(crate) struct Deployment {
    nodes: Vec<Herald>,
    pub(crate) key: String,
    /// The fresh PostgreSQL database, if any.
    database: Option<String>,
}

/// What PostgreSQL did for one scenario, read after Herald stopped.
pub(crate) struct DbTotals {
    commits: i64,
    rollbacks: i64,
}

impl Deployment {
    /// `path` on every node.
    pub(crate) fn urls(&self, path: &str) -> Vec<String> {
        self.nodes.iter().map(|node| format!("{}{path}", node.base)).collect()
    }

    pub(crate) fn base(&self) -> &str {
        &self.nodes[0].base
    }

    /// (current, peak) RSS in MiB, summed over the nodes.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<(f64, f64)> {
        let mut total = (0.0, 0.0);
        for node in &self.nodes {
            let (rss, peak) = node.rss_mib()?;
            total = (total.0 + rss, total.1 + peak);
        }
        Ok(total)
    }

    pub(crate) fn cpu(&self) -> Duration {
        self.nodes.iter().map(Herald::cpu).sum()
    }

    /// Stops every node; on PostgreSQL then reads the database's commit
    /// count (backends flush their statistics as they exit) and drops it.
    pub(crate) async fn stop(self, pg: Option<&Admin>) -> anyhow::Result<Option<DbTotals>> {
        for node in self.nodes {
            tokio::task::block_in_place(|| node.stop());
        }
        let (Some(database), Some(pg)) = (self.database, pg) else {
            return Ok(None);
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (commits, rollbacks) = pg.commits(&database).await?;
        pg.drop_database(&database).await?;
        Ok(Some(DbTotals { commits, rollbacks }))
    }
}

/// Starts Herald on `backend`, makes a project, a key and one webhook to `target`.
pub(crate) async fn herald_with_webhook(
    args: &Args,
    pg: Option<&Admin>,
    backend: Backend,
    client: &HttpClient,
    target: &str,
    extra: &[&str],
) -> anyhow::Result<Deployment> {
    let binary = args.herald.clone().unwrap_or_else(default_binary);
    let mut herald_args = args.herald_args.clone();
    herald_args.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut deployment = Deployment {
        nodes: Vec::new(),
        key: String::new(),
        database: None,
    };
    if backend.is_postgres() {
        let pg = pg.context("PostgreSQL backends need the admin connection")?;
        let (name, url) = pg.create_database().await?;
        deployment.database = Some(name);
        // One after the other: the first applies the migrations.
        for node in 0..backend.nodes() {
            let mut node_args = herald_args.clone();
            node_args.extend(["--database-url".to_owned(), url.clone()]);
            node_args.extend(["--node-name".to_owned(), format!("bench-{node}")]);
            deployment
                .nodes
                .push(tokio::task::block_in_place(|| Herald::start(&binary, &node_args))?);
        }
    } else {
        deployment
            .nodes
            .push(tokio::task::block_in_place(|| Herald::start(&binary, &herald_args))?);
    }
    let base = deployment.base().to_owned();
    let project = load::post_json(
        client,
        &format!("{base}/v1/projects"),
        ADMIN_KEY,
        json!({ "name": "bench" }),
    )
    .await?;
    let keys = format!(
        "{base}/v1/projects/{}/api_keys",
        project["id"].as_str().context("project id")?
    );
    let key = load::post_json(client, &keys, ADMIN_KEY, json!({})).await?["key"]
        .as_str()
        .context("key")?
        .to_owned();
    let webhook = json!({ "uri": target, "subscribed_events": ["*"] });
    load::post_json(client, &format!("{base}/v1/webhooks"), &key, webhook).await?;
    deployment.key = key;
    Ok(deployment)
}

/// Adds the "commits per event" row of a PostgreSQL scenario.
fn commits_row(table: &mut Table, label: &str, totals: Option<DbTotals>, events: u64) {
    if let Some(DbTotals { commits, rollbacks }) = totals {
        table.add(
            &format!("{label}: database commits per event"),
            format!("{:.2}", commits as f64 / events.max(1) as f64),
            &format!(
                "{commits} commits (+{rollbacks} rollbacks) in the bench database for {events} events, whole scenario, read-only transactions included"
            ),
        );
    }
}

/// Cheap counters around one PostgreSQL step: transactions that wrote,
/// WAL, and CPU of Herald, of PostgreSQL and of this benchmark.
struct Probe {
    at: Instant,
    xid: i64,
    wal: i64,
    herald: Duration,
    postgres: Duration,
    bench: Duration,
}

impl Probe {
    async fn take(pg: &Admin, deployment: &Deployment) -> anyhow::Result<Self> {
        let (xid, wal) = pg.counters().await?;
        Ok(Self {
            at: Instant::now(),
            xid,
            wal,
            herald: deployment.cpu(),
            postgres: cpu_of_all("postgres"),
            bench: cpu_of(std::process::id()).unwrap_or_default(),
        })
    }

    /// What happened between `self` and `later`, per event.
    fn describe(&self, later: &Self, events: u64) -> String {
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let cores = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64() / seconds;
        let events = events.max(1) as f64;
        format!(
            "write xacts/event {:.2}, WAL {:.0} B/event (cluster-wide); CPU cores: herald {:.2}, postgres {:.2}, bench {:.2}",
            (later.xid - self.xid) as f64 / events,
            (later.wal - self.wal) as f64 / events,
            cores(self.herald, later.herald),
            cores(self.postgres, later.postgres),
            cores(self.bench, later.bench),
        )
    }
}

pub(crate) async fn wait_for_count(receiver: &Receiver, target: u64, limit: Duration) -> anyhow::Result<Duration> {
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

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let pg = if args.backends.iter().any(|b| b.is_postgres()) {
        Some(Admin::connect(&args.database_url).await?)
    } else {
        None
    };
    let result = run_scenarios(&args, pg.as_ref()).await;
    if let Some(pg) = &pg {
        pg.drop_all().await;
    }
    result
}

async fn run_scenarios(args: &Args, pg: Option<&Admin>) -> anyhow::Result<()> {
    let client = load::client();
    let mut table = Table { rows: Vec::new() };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "herald-bench on {cpus} CPUs; publishers={} duration={:?}",
        args.publishers, args.duration
    );
    let backends: Vec<&str> = args.backends.iter().map(|b| b.name()).collect();
    let load_at_start = load_average();
    if pg.is_some() {
        println!(
            "backends={}; PostgreSQL admin connection {}; load average {load_at_start}",
            backends.join(","),
            crate::pg::redact(&args.database_url)
        );
    }
    let mut ceiling = None;
    for scenario in args.scenarios.clone() {
        if scenario == "ceiling" {
            println!("== {scenario}");
            ceiling = Some(raw_ceiling(args, &client, &mut table).await?);
            continue;
        }
        for backend in args.backends.iter().copied() {
            if backend.is_postgres() {
                println!("== {scenario} [{}]", backend.name());
            } else {
                println!("== {scenario}");
            }
            let on = On { args, pg, backend };
            let outcome = match scenario.as_str() {
                "single" => throughput(&on, &client, &mut table, false, ceiling).await,
                "batch" => throughput(&on, &client, &mut table, true, ceiling).await,
                "latency" => latency(&on, &client, &mut table).await,
                "sustained-single" => sustained(&on, &client, &mut table, false, ceiling).await,
                "sustained-batch" => sustained(&on, &client, &mut table, true, ceiling).await,
                "backlog" if backend.is_postgres() => {
                    println!("  (backlog runs on SQLite only)");
                    Ok(())
                }
                "backlog" => backlog(&on, &client, &mut table).await,
                "controls" => {
                    async {
                        for (metric, value, note) in crate::controls::run(args, pg, backend, &client).await? {
                            table.add(&format!("{}{metric}", backend.prefix()), value, &note);
                        }
                        Ok(())
                    }
                    .await
                }
                "batches" if backend.is_postgres() => {
                    println!("  (batches runs on SQLite only)");
                    Ok(())
                }
                "batches" => {
                    async {
                        let binary = args.herald.clone().unwrap_or_else(default_binary);
                        for &requests in &args.batch_requests {
                            for (metric, value, note) in
                                crate::batches::run(&binary, &args.herald_args, &client, requests).await?
                            {
                                table.add(&metric, value, &note);
                            }
                        }
                        Ok(())
                    }
                    .await
                }
                "operations" => crate::operations::lifecycles(&on, &client, &mut table).await,
                "waits" => crate::operations::waits(&on, &client, &mut table).await,
                other => bail!("unknown scenario {other}"),
            };
            // On PostgreSQL a failed scenario is a row, and the run goes on
            // (its nodes were killed when dropped; drop its database now).
            match outcome {
                Err(error) if backend.is_postgres() => {
                    table.add(
                        &format!("{}{scenario}", backend.prefix()),
                        "FAILED".to_owned(),
                        &format!("{error:#}"),
                    );
                    if let Some(pg) = pg {
                        pg.drop_all().await;
                    }
                }
                other => other?,
            }
        }
    }
    table.print();
    if pg.is_some() {
        println!(
            "\nload average (1, 5, 15 min): {load_at_start} at the start, {} at the end",
            load_average()
        );
    }
    Ok(())
}

/// One scenario's setting: the arguments and the backend it runs on.
pub(crate) struct On<'a> {
    pub(crate) args: &'a Args,
    pg: Option<&'a Admin>,
    pub(crate) backend: Backend,
}

impl On<'_> {
    pub(crate) async fn herald(&self, client: &HttpClient, target: &str, extra: &[&str]) -> anyhow::Result<Deployment> {
        herald_with_webhook(self.args, self.pg, self.backend, client, target, extra).await
    }

    /// The PostgreSQL admin connection, on a PostgreSQL backend.
    pub(crate) fn postgres(&self) -> Option<&Admin> {
        self.pg.filter(|_| self.backend.is_postgres())
    }
}

async fn raw_ceiling(args: &Args, client: &HttpClient, table: &mut Table) -> anyhow::Result<f64> {
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}/", receiver.addr);
    // Herald's payload is the event plus its envelope: send a body of that size.
    let body = Bytes::from(format!(
        "{{\"id\":\"evt_01JH000000000000000000000\",\"type\":\"batch.succeeded\",\"version\":\"v1\",\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"data\":{}}}",
        event(1)["data"]
    ));
    let (count, elapsed) = load::closed_loop(
        client,
        std::slice::from_ref(&url),
        None,
        args.publishers,
        args.duration,
        body,
    )
    .await?;
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
    on: &On<'_>,
    client: &HttpClient,
    table: &mut Table,
    batch: bool,
    ceiling: Option<f64>,
) -> anyhow::Result<()> {
    let args = on.args;
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let herald = on.herald(client, &format!("http://{}/", receiver.addr), &[]).await?;
    let shape = PublishShape::new(args, batch);
    let (body, per_request) = (shape.body, shape.per_request);
    let label = format!("{}{}", on.backend.prefix(), shape.label);
    let urls = herald.urls(shape.path);
    let before = match on.postgres() {
        Some(pg) => Some(Probe::take(pg, &herald).await?),
        None => None,
    };
    let started = Instant::now();
    let (requests, elapsed) =
        load::closed_loop(client, &urls, Some(&herald.key), args.publishers, args.duration, body).await?;
    let delivered_in_window = receiver.count();
    let published = requests * per_request;
    let probe = match (on.postgres(), &before) {
        (Some(pg), Some(before)) => format!("; {}", before.describe(&Probe::take(pg, &herald).await?, published)),
        _ => String::new(),
    };
    let tail = wait_for_count(&receiver, published, Duration::from_secs(300)).await?;
    let total = started.elapsed();
    let (rss, peak) = herald.rss_mib()?;
    let totals = herald.stop(on.pg).await?;
    receiver.stop();
    let publish_rate = published as f64 / elapsed.as_secs_f64();
    let delivered_rate = delivered_in_window as f64 / elapsed.as_secs_f64();
    let overall = published as f64 / total.as_secs_f64();
    table.add(
        &format!("{label}: events published/s"),
        format!("{publish_rate:.0}"),
        &format!("HTTP publish, durably committed before 202{probe}"),
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
    commits_row(table, &label, totals, published);
    Ok(())
}

/// Publishes at increasing fixed rates; a rate is sustained when deliveries
/// keep pace: at least 95% of the window's events are delivered within the
/// window, and the rest within one second after it. Reports each step and
/// the highest sustained rate.
async fn sustained(
    on: &On<'_>,
    client: &HttpClient,
    table: &mut Table,
    batch: bool,
    ceiling: Option<f64>,
) -> anyhow::Result<()> {
    let args = on.args;
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let herald = on.herald(client, &format!("http://{}/", receiver.addr), &[]).await?;
    let shape = PublishShape::new(args, batch);
    let (body, per_request) = (shape.body, shape.per_request as usize);
    let label = format!("{}{}", on.backend.prefix(), shape.label);
    let urls = herald.urls(shape.path);
    let sampler = match (on.postgres(), &herald.database) {
        (Some(_), Some(database)) => Some(WaitSampler::start(&args.database_url, database).await?),
        _ => None,
    };
    let rates = if on.backend.is_postgres() {
        &args.postgres_rates
    } else {
        &args.rates
    };
    let mut best = None;
    let mut events = 0;
    for rate in rates.iter().copied() {
        let before = receiver.count();
        let probe = match on.postgres() {
            Some(pg) => Some(Probe::take(pg, &herald).await?),
            None => None,
        };
        if let Some(sampler) = &sampler {
            sampler.take();
        }
        let paced = load::paced(
            client,
            &urls,
            &herald.key,
            rate as f64 / per_request as f64,
            args.duration,
            body.clone(),
        )
        .await?;
        let published = paced.ok * per_request as u64;
        events += published;
        let in_window = receiver.count() - before;
        let mut extra = String::new();
        if let (Some(pg), Some(probe)) = (on.postgres(), &probe) {
            extra = format!("; {}", probe.describe(&Probe::take(pg, &herald).await?, published));
        }
        if let Some(sampler) = &sampler {
            extra = format!("{extra}; {}", sampler.take());
        }
        if let Some(refusal) = &paced.first_refusal {
            extra = format!("; {} publishes REFUSED, first: {refusal}{extra}", paced.refused);
        }
        if paced.unsent > 0 {
            extra = format!(
                "; GAVE UP on {} publishes (still behind 2 × the window + 5 s){extra}",
                paced.unsent
            );
        }
        let tail = wait_for_count(&receiver, before + published, Duration::from_secs(60)).await;
        // Every offered event published (no refusals, nothing given up on),
        // delivered in pace.
        let kept_up = matches!(tail, Ok(tail) if tail <= Duration::from_secs(1))
            && in_window as f64 >= 0.95 * published as f64
            && paced.refused == 0
            && paced.unsent == 0
            && published as f64 >= 0.95 * rate as f64 * args.duration.as_secs_f64();
        let cleared = match tail {
            Ok(tail) => format!("backlog cleared {tail:.1?} after"),
            Err(_) => format!(
                "backlog of {} not cleared 60 s after",
                (before + published).saturating_sub(receiver.count())
            ),
        };
        let note = format!(
            "{:.0} delivered/s during the window, {cleared}; {}{extra}",
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
    if let Some(sampler) = sampler {
        sampler.stop();
    }
    let (rss, peak) = herald.rss_mib()?;
    let totals = herald.stop(on.pg).await?;
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
    commits_row(table, &label, totals, events);
    Ok(())
}

async fn latency(on: &On<'_>, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    let args = on.args;
    let prefix = on.backend.prefix();
    let receiver = Receiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    receiver.counters.track.store(true, Ordering::Relaxed);
    let herald = on.herald(client, &format!("http://{}/", receiver.addr), &[]).await?;
    let urls = herald.urls("/v1/events");
    let probe = match on.postgres() {
        Some(pg) => Some(Probe::take(pg, &herald).await?),
        None => None,
    };
    let (sent, refused, first_refusal) =
        load::open_loop(client, &urls, &herald.key, args.rate, args.duration, event_bytes()).await?;
    wait_for_count(&receiver, sent.len() as u64, Duration::from_secs(120)).await?;
    let probe = match (on.postgres(), &probe) {
        (Some(pg), Some(before)) => format!(
            "; {}",
            before.describe(&Probe::take(pg, &herald).await?, sent.len() as u64)
        ),
        _ => String::new(),
    };
    let totals = herald.stop(on.pg).await?;
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
    if latencies.is_empty() {
        bail!(
            "no publish was accepted ({refused} refused, first: {})",
            first_refusal.as_deref().unwrap_or("none")
        );
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let mut note = format!("{} events at {}/s", latencies.len(), args.rate);
    if let Some(refusal) = first_refusal {
        note = format!("{note}; {refused} more publishes REFUSED, first: {refusal}");
    }
    table.add(
        &format!("{prefix}publish→receive latency p50"),
        format!("{:.2} ms", at(0.50).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        &format!("{prefix}publish→receive latency p90"),
        format!("{:.2} ms", at(0.90).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        &format!("{prefix}publish→receive latency p99"),
        format!("{:.2} ms", at(0.99).as_secs_f64() * 1e3),
        &note,
    );
    table.add(
        &format!("{prefix}publish→receive latency max"),
        format!("{:.2} ms", at(1.0).as_secs_f64() * 1e3),
        &format!("{note}{probe}"),
    );
    let ack = |q: f64| acks[((acks.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    table.add(
        &format!("{prefix}publish → 202 (durable commit) p50 / p99"),
        format!("{:.2} / {:.2} ms", ack(0.5), ack(0.99)),
        if on.backend.is_postgres() {
            "the producer's wait, synchronous_commit = on"
        } else {
            "the producer's wait, fsync included"
        },
    );
    commits_row(table, &format!("{prefix}latency run"), totals, sent.len() as u64);
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

async fn backlog(on: &On<'_>, client: &HttpClient, table: &mut Table) -> anyhow::Result<()> {
    let args = on.args;
    // An endpoint that refuses connections: a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    // Retry every 5 s (no jitter) so the backlog is due again as soon as the
    // endpoint returns; the default schedule would wait minutes to hours.
    let schedule = vec!["5s"; 100].join(",");
    let deployment = on
        .herald(client, &format!("http://{target}/"), &["--retry-schedule", &schedule])
        .await?;
    let key = deployment.key.clone();
    let herald = &deployment.nodes[0];
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
    deployment.stop(on.pg).await?;
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
