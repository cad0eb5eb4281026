//! `controls`: does a webhook with per-endpoint controls cost a healthy
//! one anything? Two runs on fresh Heralds with the same flood of
//! `events:batchCreate` (`--publishers`, `--duration`, `--batch-size`) to
//! a healthy webhook: alone, then beside a webhook limited to 5 events/s
//! and a FIFO webhook, both subscribed to `side.*` and given a backlog of
//! `SIDE_BACKLOG` events before the flood (the healthy webhook receives
//! those too, before the measurement starts). Reports the healthy
//! webhook's publish→deliver throughput in each run and their ratio, and
//! what the controlled webhooks delivered meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;

use crate::load::{self, HttpClient};
use crate::pg::Admin;
use crate::receiver::Receiver;
use crate::scenarios::{Deployment, batch_bytes, herald_with_webhook};
use crate::{Args, Backend};

pub type Row = (String, String, String);

/// Side events queued for the controlled webhooks before the flood.
const SIDE_BACKLOG: u64 = 2_000;

async fn wait_for(receiver: &Receiver, target: u64, limit: Duration) -> anyhow::Result<()> {
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
    Ok(())
}

/// The flood to `deployment`: (events published, seconds from the first
/// publish until the healthy receiver had them all).
async fn flood(
    args: &Args,
    client: &HttpClient,
    deployment: &Deployment,
    healthy: &Receiver,
) -> anyhow::Result<(u64, f64)> {
    let before = healthy.count();
    let body = batch_bytes(args.batch_size);
    let urls = deployment.urls("/v1/events:batchCreate");
    let started = Instant::now();
    let (requests, _) = load::closed_loop(
        client,
        &urls,
        Some(&deployment.key),
        args.publishers,
        args.duration,
        body,
    )
    .await?;
    let published = requests * args.batch_size as u64;
    wait_for(healthy, before + published, Duration::from_secs(300)).await?;
    Ok((published, started.elapsed().as_secs_f64()))
}

pub async fn run(args: &Args, pg: Option<&Admin>, backend: Backend, client: &HttpClient) -> anyhow::Result<Vec<Row>> {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut rows = Vec::new();

    // Alone.
    let healthy = Receiver::start(local).await?;
    let deployment = herald_with_webhook(args, pg, backend, client, &format!("http://{}/", healthy.addr), &[]).await?;
    let (solo_events, solo_seconds) = flood(args, client, &deployment, &healthy).await?;
    deployment.stop(pg).await?;
    healthy.stop();
    let solo = solo_events as f64 / solo_seconds;

    // Beside a rate-limited and a FIFO webhook with backlogs.
    let healthy = Receiver::start(local).await?;
    let limited = Receiver::start(local).await?;
    let ordered = Receiver::start(local).await?;
    let deployment = herald_with_webhook(args, pg, backend, client, &format!("http://{}/", healthy.addr), &[]).await?;
    let base = deployment.base().to_owned();
    for (receiver, controls) in [
        (&limited, json!({ "rate_limit_per_second": 5 })),
        (&ordered, json!({ "ordering": "fifo" })),
    ] {
        let mut webhook = json!({ "uri": format!("http://{}/", receiver.addr), "subscribed_events": ["side.*"] });
        for (key, value) in controls.as_object().context("controls")? {
            webhook[key] = value.clone();
        }
        load::post_json(client, &format!("{base}/v1/webhooks"), &deployment.key, webhook).await?;
    }
    let side: Vec<_> = (0..100)
        .map(|n| json!({ "type": "side.created", "data": { "n": n } }))
        .collect();
    let side = Bytes::from(json!({ "events": side }).to_string());
    for _ in 0..SIDE_BACKLOG / 100 {
        let (status, answer) = load::post(
            client,
            &format!("{base}/v1/events:batchCreate"),
            Some(&deployment.key),
            side.clone(),
        )
        .await?;
        if !status.is_success() {
            bail!(
                "publishing the side backlog: {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    wait_for(&healthy, SIDE_BACKLOG, Duration::from_secs(120)).await?;
    let (limited_before, ordered_before) = (limited.count(), ordered.count());
    let (mixed_events, mixed_seconds) = flood(args, client, &deployment, &healthy).await?;
    let limited_rate = (limited.count() - limited_before) as f64 / mixed_seconds;
    let ordered_rate = (ordered.count() - ordered_before) as f64 / mixed_seconds;
    let ordered_left = SIDE_BACKLOG.saturating_sub(ordered.count());
    deployment.stop(pg).await?;
    for receiver in [healthy, limited, ordered] {
        receiver.stop();
    }
    let mixed = mixed_events as f64 / mixed_seconds;

    let shape = format!(
        "batchCreate ×{}, {} publishers, {:?}",
        args.batch_size, args.publishers, args.duration
    );
    rows.push((
        "controls: healthy webhook alone, deliveries/s end to end".to_owned(),
        format!("{solo:.0}"),
        format!("{solo_events} events ({shape})"),
    ));
    rows.push((
        "controls: healthy webhook beside a 5/s and a FIFO webhook, deliveries/s".to_owned(),
        format!("{mixed:.0}"),
        format!("{mixed_events} events; both controlled webhooks held a {SIDE_BACKLOG}-event backlog"),
    ));
    rows.push((
        "controls: healthy throughput beside / alone".to_owned(),
        format!("{:.2}", mixed / solo),
        "the target is at least 0.90".to_owned(),
    ));
    rows.push((
        "controls: rate-limited webhook, deliveries/s during the flood".to_owned(),
        format!("{limited_rate:.2}"),
        "limit 5/s".to_owned(),
    ));
    rows.push((
        "controls: FIFO webhook, deliveries/s during the flood".to_owned(),
        format!("{ordered_rate:.0}"),
        format!("one at a time; {ordered_left} of its backlog left at the end"),
    ));
    Ok(rows)
}
