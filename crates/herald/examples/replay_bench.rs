//! How long a replay of 100,000 failed deliveries takes on SQLite (the
//! embedded default, `durability = full`) or PostgreSQL, and what it does
//! to publishes running beside it.
//!
//! ```sh
//! cargo run --release -p herald --example replay_bench [-- DELIVERIES]
//! # on PostgreSQL, in an empty database:
//! HERALD_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/replay_bench \
//!     cargo run --release -p herald --example replay_bench
//! ```
//!
//! Stages the deliveries through the store (publish, claim, fail), then
//! times `herald::replay::run_paced` (the production runner's loop:
//! bounded chunks, each its own transaction, paced on SQLite) while one
//! task publishes single events back to back into another project, and
//! prints one table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald::clock::{SharedClock, SystemClock};
use herald::domain::project::{Name, Project};
use herald::domain::{EndpointUri, EventId, EventType, ProjectId, ReplayId, SigningKind, SubscribedEvents, WebhookId};
use herald::store::postgres::PostgresOptions;
use herald::store::sqlite::SqliteOptions;
use herald::store::{
    ClaimRequest, Completion, CreatedReplay, NewEvent, NewReplay, NewSecret, NewWebhook, NextStep, PublishRequest,
    ReplayFilter, StorageConfig, Store,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let deliveries: usize = std::env::args().nth(1).map_or(Ok(100_000), |n| n.parse())?;
    let dir = tempfile::tempdir()?;
    let clock: SharedClock = Arc::new(SystemClock);
    // PostgreSQL when given an (empty) database; the embedded SQLite otherwise.
    let config = match std::env::var("HERALD_BENCH_DATABASE_URL") {
        Ok(url) => StorageConfig::Postgres(PostgresOptions {
            url,
            pool_size: 16,
            migrate_on_start: true,
            node_name: "replay-bench".into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            // A fresh key: the benchmark's database is its own.
            master_keys: Some(herald::domain::secret::Keyring::new(
                herald::domain::secret::MasterKey::generate().map_err(|e| anyhow::anyhow!("{e}"))?,
                Vec::new(),
            )),
        }),
        Err(_) => StorageConfig::Sqlite(SqliteOptions {
            data_dir: dir.path().to_path_buf(),
            ..SqliteOptions::default()
        }),
    };
    let store = herald::store::open(&config, Arc::clone(&clock)).await?;
    let start = clock.now();
    let (project, webhook) = tenant(&store, "replayed", start).await?;
    let (busy, _) = tenant(&store, "busy", start).await?;

    // Stage: publish, claim and fail every delivery.
    let staging = Instant::now();
    for chunk in 0..deliveries.div_ceil(1000) {
        let count = 1000.min(deliveries - chunk * 1000);
        let events = (0..count).map(|_| event(clock.now())).collect();
        store.publish(request(project, events, clock.now())).await?;
    }
    loop {
        let now = clock.now();
        let jobs = store
            .claim(ClaimRequest {
                now,
                lease_until: now.saturating_add(Duration::from_secs(60)),
                limit: 1000,
                default_room: 1000,
                room: Vec::new(),
                max_leased_per_webhook: 1000,
            })
            .await?
            .jobs;
        if jobs.is_empty() {
            break;
        }
        let failed = jobs
            .iter()
            .map(|job| Completion {
                delivery_id: job.delivery_id,
                webhook_id: job.endpoint.webhook_id,
                lease: job.lease,
                attempt: None,
                next: NextStep::Failed,
                last_error: Some("expired".into()),
                disable_webhook: None,
                now,
                health: None,
            })
            .collect();
        store.complete(failed).await?;
    }
    let staged = staging.elapsed();

    // Publish latency alone, for comparison.
    let mut baseline = Vec::new();
    let alone = Instant::now();
    while alone.elapsed() < Duration::from_secs(3) {
        let began = Instant::now();
        store
            .publish(request(busy, vec![event(clock.now())], clock.now()))
            .await?;
        baseline.push(began.elapsed());
    }
    baseline.sort();

    // Replay, with a publisher beside it.
    let now = clock.now();
    let created = store
        .create_replay(NewReplay {
            id: ReplayId::generate(),
            project_id: project,
            webhook_id: webhook,
            since: start,
            until: now,
            filter: ReplayFilter::Failed,
            now,
        })
        .await?;
    let CreatedReplay::Created(replay) = created else {
        anyhow::bail!("the replay was not created: {created:?}")
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = tokio::spawn({
        let (store, clock, stop) = (Arc::clone(&store), Arc::clone(&clock), stop.clone());
        async move {
            let mut latencies = Vec::new();
            while !stop.is_cancelled() {
                let began = Instant::now();
                if store
                    .publish(request(busy, vec![event(clock.now())], clock.now()))
                    .await
                    .is_err()
                {
                    break;
                }
                latencies.push(began.elapsed());
            }
            latencies
        }
    });
    let replaying = Instant::now();
    let queued = herald::replay::run_paced(store.as_ref(), &clock).await?;
    let replayed = replaying.elapsed();
    stop.cancel();
    let mut latencies = publisher.await?;
    latencies.sort();
    let done = store.get_replay(project, replay.id).await?.expect("the replay exists");
    assert_eq!(queued, deliveries as u64);
    assert_eq!(done.requeued, deliveries as u64);

    let pct = |sorted: &[Duration], q: f64| {
        sorted
            .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| failed deliveries staged | {deliveries} (in {:.1} s) |",
        staged.as_secs_f64()
    );
    println!("| replay: time to re-queue all | {:.2} s |", replayed.as_secs_f64());
    println!(
        "| replay: rate | {:.0} deliveries/s |",
        deliveries as f64 / replayed.as_secs_f64()
    );
    println!("| publishes beside it (one event each) | {} |", latencies.len());
    println!(
        "| publish latency beside it, p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    println!(
        "| publish latency alone (3 s before), p50 / p99 / max | {:.2} / {:.2} / {:.2} ms |",
        pct(&baseline, 0.5),
        pct(&baseline, 0.99),
        baseline.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
    store.close().await;
    Ok(())
}

async fn tenant(
    store: &Arc<dyn Store>,
    name: &str,
    now: herald::domain::Timestamp,
) -> anyhow::Result<(ProjectId, WebhookId)> {
    let project = ProjectId::generate();
    store
        .create_project(Project {
            id: project,
            name: Name::parse(name).map_err(|e| anyhow::anyhow!("{e}"))?,
            create_time: now,
        })
        .await?;
    let webhook = store
        .create_webhook(NewWebhook {
            id: WebhookId::generate(),
            project_id: project,
            name: Name::parse("receiver").map_err(|e| anyhow::anyhow!("{e}"))?,
            uri: EndpointUri::parse("https://hooks.example.com/herald").map_err(|e| anyhow::anyhow!("{e}"))?,
            subscribed_events: SubscribedEvents::parse(&["batch.*"]).map_err(|e| anyhow::anyhow!("{e}"))?,
            signing: SigningKind::Hmac,
            controls: Default::default(),
            secret: NewSecret::mint(SigningKind::Hmac).map_err(|e| anyhow::anyhow!("{e}"))?,
            now,
            max_per_project: 100,
        })
        .await?;
    Ok((project, webhook.id))
}

fn event(now: herald::domain::Timestamp) -> NewEvent {
    let id = EventId::generate();
    NewEvent {
        id,
        event_type: EventType::parse("batch.succeeded").expect("valid"),
        timestamp: now,
        payload: Bytes::from(format!(r#"{{"id":"{id}","type":"batch.succeeded","data":{{}}}}"#)),
    }
}

fn request(project: ProjectId, events: Vec<NewEvent>, now: herald::domain::Timestamp) -> PublishRequest {
    PublishRequest {
        project_id: project,
        events,
        idempotency: None,
        now,
        max_deliveries: 10_000,
    }
}
