//! `herald-bench`: measures Herald end to end on this machine and prints
//! one table. Herald runs as a child process (the release binary, embedded
//! SQLite, default durability unless told otherwise); the receiver and the
//! load generator run in this process on loopback.
//!
//! Scenarios:
//! - `ceiling`: the same client POSTing straight to the receiver (no Herald);
//! - `sustained-single` / `sustained-batch`: publish at rising fixed rates
//!   (one event per request, or `events:batchCreate` of 100) and report the
//!   highest rate at which every event is also delivered without a backlog;
//! - `single` / `batch`: a flood (publishers back to back): the publish
//!   rate Herald absorbs, and how fast it delivers the backlog;
//! - `latency`: publish at a fixed rate and measure publish→receive time;
//! - `backlog`: 1,000,000 deliveries pending for an unreachable endpoint:
//!   RSS, then the drain rate once the endpoint comes back;
//! - `controls` (not in the default list): publish→deliver throughput of a
//!   healthy webhook alone, then beside a 5-event/s rate-limited webhook and
//!   a FIFO webhook that both hold a backlog (`controls.rs`);
//! - `batches` (not in the default list; SQLite only): OpenAI-compatible
//!   batches of `--batch-requests` requests against `builtin:echo`.
//! - `operations` / `waits`: long-running operations driven over HTTP to a
//!   per-job webhook, and 10,000 concurrent `:wait` long-polls (see
//!   `operations.rs`; not in the default list).
//!
//! Backends (`--backends`): `sqlite` (as above), `postgres` (one node on a
//! fresh PostgreSQL database) and `postgres2` (two `herald serve` processes
//! on one fresh database, the load split between them, one receiver). Each
//! scenario runs on each backend in turn (`ceiling` once; `backlog` on
//! SQLite only); SQLite rows keep their names, PostgreSQL rows are prefixed.
//! PostgreSQL databases are created as `herald_bench_<random>` through the
//! admin connection (`--database-url`) and dropped with `WITH (FORCE)`.

mod batches;
mod controls;
mod load;
mod operations;
mod pg;
mod receiver;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "End-to-end Herald benchmark")]
pub struct Args {
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceiling,sustained-single,sustained-batch,single,batch,latency,backlog"
    )]
    pub scenarios: Vec<String>,
    /// The herald binary [default: next to this one, i.e. target/release/herald].
    #[arg(long)]
    pub herald: Option<PathBuf>,
    /// How long each throughput phase publishes.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Concurrent publishers in the throughput phases.
    #[arg(long, default_value_t = 64)]
    pub publishers: usize,
    /// Events per request in the batch phase.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Offered rates (events/s) of the sustained phases, tried in order
    /// until one is not sustained.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "5000,10000,12500,15000,17500,20000,25000,30000,35000,40000"
    )]
    pub rates: Vec<u64>,
    /// Publish rate of the latency phase (events/s).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Deliveries pending in the backlog phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: usize,
    /// Requests per batch in the `batches` scenario, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    pub batch_requests: Vec<usize>,
    /// Extra arguments for `herald serve` (e.g. "--durability=process").
    #[arg(long = "herald-arg", allow_hyphen_values = true)]
    pub herald_args: Vec<String>,
    /// Storage backends to run each scenario on: sqlite, postgres (one
    /// node), postgres2 (two nodes on one database).
    #[arg(long, value_delimiter = ',', default_value = "sqlite", value_parser = Backend::parse)]
    pub backends: Vec<Backend>,
    /// PostgreSQL admin connection: creates and drops one fresh database per
    /// PostgreSQL scenario (Herald connects to that database on the same server).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub database_url: String,
    /// Offered rates (events/s) of the sustained phases on PostgreSQL.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2500,5000,7500,10000,12500,15000,17500,20000"
    )]
    pub postgres_rates: Vec<u64>,
    /// `operations` scenario: deliver to the project's webhook instead of
    /// a per-job webhook (isolates the cost of per-job webhook rows).
    #[arg(long)]
    pub operations_to_project_webhook: bool,
}

/// Where Herald keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Postgres2,
}

impl Backend {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" => Ok(Self::Postgres),
            "postgres2" => Ok(Self::Postgres2),
            other => Err(format!("unknown backend {other} (sqlite, postgres, postgres2)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Postgres2 => "postgres2",
        }
    }

    /// `herald serve` processes sharing the data.
    pub fn nodes(self) -> usize {
        match self {
            Self::Sqlite | Self::Postgres => 1,
            Self::Postgres2 => 2,
        }
    }

    pub fn is_postgres(self) -> bool {
        self != Self::Sqlite
    }

    /// Prefix of this backend's table rows (none for SQLite, so its rows
    /// compare with earlier runs).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => "PostgreSQL 1 node, ",
            Self::Postgres2 => "PostgreSQL 2 nodes, ",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(scenarios::run(args))
}
