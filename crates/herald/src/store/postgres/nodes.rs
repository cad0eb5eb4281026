//! Nodes sharing one database: registration, heartbeats, and failover.
//!
//! Every process registers a row (a fresh id per run, plus its stable
//! name) and refreshes its heartbeat every `heartbeat`. Each node also
//! looks for nodes whose heartbeat is older than `node_timeout`: it
//! deletes such a node's row and ends its leases in the same transaction
//! (each attempt logged `interrupted`, the delivery due at once), so a dead
//! node's work resumes within seconds instead of a lease length. Only one
//! survivor can delete the row, so the leases are ended once.
//!
//! Liveness is judged by the database server's clock (`clock_timestamp()`),
//! so nodes' own clocks need not agree. A node that was wrongly declared
//! dead (a long pause) finds its row gone at its next heartbeat, registers
//! again and carries on: its late completions are refused by the lease
//! fence (its attempts are still logged), and the deliveries are sent
//! again by their new owners: a duplicate, never a loss.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio_util::sync::CancellationToken;

use super::connect::{pool_error, store_error};
use super::queue::end_node_leases;
use crate::clock::SharedClock;
use crate::store::StoreResult;

/// Milliseconds since the epoch on the database server's clock.
const DB_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";

/// This process's identity among the nodes.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Unique per run: what leases record.
    pub id: String,
    /// Stable across restarts: how a restarted node finds its previous run.
    pub name: String,
    pub role: &'static str,
    /// The master keys this node holds (comma-separated ids): a master-key
    /// rotation refuses to switch to a key some live node lacks.
    pub master_key_ids: String,
}

impl Node {
    pub(super) fn new(name: String) -> Self {
        Self {
            id: format!("node_{}", ulid::Ulid::generate().to_string().to_lowercase()),
            name,
            role: "all",
            master_key_ids: String::new(),
        }
    }
}

/// Registers `node`, first ending the leases of earlier runs with the same
/// name (a restart after a crash resumes its own work at once). Returns
/// how many deliveries were resumed.
pub(super) async fn register(pool: &Pool, node: &Node, clock: &SharedClock) -> StoreResult<u64> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    let earlier = tx
        .query(
            &format!("SELECT id, heartbeat_at > {DB_NOW} - 10000 FROM nodes WHERE name = $1 FOR UPDATE"),
            &[&node.name],
        )
        .await
        .map_err(store_error)?;
    let mut resumed = 0;
    for row in &earlier {
        let id: String = row.get(0);
        let recent: bool = row.get(1);
        if recent {
            tracing::warn!(
                node = %node.name,
                "a node with this name heartbeat less than 10s ago; if it is still running, give each node its own --node-name"
            );
        }
        resumed += end_node_leases(&tx, &id, clock.now()).await?;
        tx.execute("DELETE FROM nodes WHERE id = $1", &[&id])
            .await
            .map_err(store_error)?;
    }
    insert(&tx, node).await?;
    tx.commit().await.map_err(store_error)?;
    Ok(resumed)
}

async fn insert(client: &impl GenericClient, node: &Node) -> StoreResult<()> {
    client
        .execute(
            &format!(
                "INSERT INTO nodes (id, name, role, started_at, heartbeat_at, master_key_ids)
                 VALUES ($1, $2, $3, {DB_NOW}, {DB_NOW}, $4)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at"
            ),
            &[&node.id, &node.name, &node.role, &node.master_key_ids],
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Refreshes this node's heartbeat; re-registers if it was declared dead.
pub(super) async fn heartbeat(client: &impl GenericClient, node: &Node) -> StoreResult<()> {
    let updated = client
        .execute(
            &format!("UPDATE nodes SET heartbeat_at = {DB_NOW} WHERE id = $1"),
            &[&node.id],
        )
        .await
        .map_err(store_error)?;
    if updated == 0 {
        tracing::warn!(node = %node.name, "this node was declared dead by another (a long pause?); registering again");
        insert(client, node).await?;
    }
    Ok(())
}

/// Ends the leases of every other node silent for `timeout`; returns how
/// many deliveries resumed.
pub(super) async fn reap(pool: &Pool, node: &Node, timeout: Duration, clock: &SharedClock) -> StoreResult<u64> {
    let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let client = pool.get().await.map_err(pool_error)?;
    let silent = client
        .query(
            &format!("SELECT id, name FROM nodes WHERE heartbeat_at < {DB_NOW} - $1 AND id <> $2"),
            &[&timeout_ms, &node.id],
        )
        .await
        .map_err(store_error)?;
    drop(client);
    let mut resumed = 0;
    for row in &silent {
        let (id, name): (String, String) = (row.get(0), row.get(1));
        let mut client = pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await.map_err(store_error)?;
        let deleted = tx
            .execute(
                &format!("DELETE FROM nodes WHERE id = $1 AND heartbeat_at < {DB_NOW} - $2"),
                &[&id, &timeout_ms],
            )
            .await
            .map_err(store_error)?;
        if deleted == 0 {
            continue; // another survivor got there first, or it came back
        }
        let ended = end_node_leases(&tx, &id, clock.now()).await?;
        tx.commit().await.map_err(store_error)?;
        metrics::counter!("herald_node_failovers_total").increment(1);
        tracing::warn!(node = %name, resumed = ended, "a node stopped heartbeating; its deliveries resume here and on the other nodes");
        resumed += ended;
    }
    Ok(resumed)
}

/// Heartbeats and failover checks every `interval` until `stop`.
/// Also repairs scheduling hints every `hints::REPAIR_EVERY` beats.
pub(super) async fn run(
    pool: Pool,
    hint_pool: Pool,
    node: Node,
    interval: Duration,
    timeout: Duration,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        beats += 1;
        if beats.is_multiple_of(super::hints::REPAIR_EVERY)
            && let Err(error) = super::hints::repair(&hint_pool).await
        {
            tracing::debug!(%error, "hint repair sweep failed; will retry");
        }
        let beat = match pool.get().await {
            Ok(client) => heartbeat(&client, &node).await,
            Err(error) => Err(pool_error(error)),
        };
        let outcome = match beat {
            Ok(()) => reap(&pool, &node, timeout, &clock).await.map(drop),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the database answers again");
            }
            Ok(()) => {}
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "heartbeat failed; retrying every {interval:?}");
            }
            Err(_) => {}
        }
    }
}

/// Removes this node's row at a clean stop, ending any lease it still holds.
pub(super) async fn deregister(pool: &Pool, node: &Node, clock: &SharedClock) -> StoreResult<()> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await.map_err(store_error)?;
    end_node_leases(&tx, &node.id, clock.now()).await?;
    tx.execute("DELETE FROM nodes WHERE id = $1", &[&node.id])
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}
