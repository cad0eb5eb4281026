//! The single writer: one thread owns the only read-write connection and
//! applies every write, many callers' writes per transaction (group commit).
//!
//! SQLite allows one writer at a time; many tasks each opening their own
//! write transaction would contend for that lock (`SQLITE_BUSY`, retries,
//! latency spikes). Instead each write is a job sent over a channel. The
//! thread takes the jobs that are waiting, runs each inside its own
//! SAVEPOINT (a failing job rolls back alone), commits once, and only then
//! answers the callers. So:
//!
//! - a caller's `Ok` means its changes are committed, and durable when the
//!   connection runs with `synchronous=FULL`;
//! - one fsync covers the whole batch, so throughput grows with load;
//! - no transaction ever waits on anything outside this thread.
//!
//! Fairness: queue operations (claims, completions) ride in the
//! [`Lane::Queue`] lane and join the very next transaction; other writes
//! (publishes, API changes) fill the rest of it in arrival order up to a
//! work budget. A flood of publishes therefore delays deliveries by at most
//! one bounded transaction, instead of starving them.
//!
//! Bulk jobs (a batch of many events, whose fan-out may be thousands of
//! rows) never share a transaction: each commits alone, alternating with
//! transactions of small jobs. One tenant's batches therefore hold another
//! tenant's single publish for at most one bulk job, not for every bulk job
//! queued ahead of it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

/// Answers the caller once the batch's commit outcome is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A unit of work: runs inside the batch transaction, says whether it
/// succeeded (to keep or roll back its savepoint) and how to answer. Given
/// `None`, it does not run and only prepares its answer (the transaction
/// could not be opened).
type Work = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

struct Job {
    work: Work,
    lane: Lane,
    /// Rough number of rows the job writes, for the per-commit budget.
    cost: usize,
}

/// Which queue a write waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Claims and completions: never wait behind more than one transaction.
    Queue,
    /// Everything else, in arrival order.
    Api,
}

/// Work (rows) one transaction takes from the `Api` lane; a single job
/// larger than this still runs, alone.
const API_BUDGET_PER_COMMIT: usize = 1024;
/// Jobs taken off the channel ahead of time; beyond this callers wait.
const MAX_BACKLOG: usize = 8192;
/// Jobs waiting in the channel before callers feel back-pressure.
const QUEUE_CAPACITY: usize = 8192;

#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread. It exits, checkpointing and closing the
    /// connection, after the first batch that ends with `closing` set, or
    /// when every `Writer` handle is gone; jobs sent after that fail with
    /// `Unavailable`.
    pub(super) fn spawn(
        conn: Connection,
        closing: Arc<AtomicBool>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let handle = std::thread::Builder::new()
            .name("herald-sqlite-writer".into())
            .spawn(move || run(conn, receiver, &closing))?;
        Ok((Self { jobs: sender }, handle))
    }

    /// Runs `work` in an upcoming batch transaction and returns its result
    /// once that transaction has committed.
    pub(super) async fn write<T, F>(&self, lane: Lane, cost: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let result = match conn {
                None => Err(closed()),
                Some(conn) => match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Corrupt(
                        "a storage operation panicked; it was rolled back".into(),
                    )),
                },
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let outcome = match commit {
                    Ok(()) => result,
                    Err(message) => Err(StoreError::Unavailable(message)),
                };
                // The caller may have gone away (request cancelled); the
                // write stands either way.
                let _ = answer.send(outcome);
            });
            (ok, reply)
        });
        self.jobs.send(Job { work, lane, cost }).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

/// An API job costing more than this is bulk: it commits alone.
const BULK_COST: usize = 16;

/// Jobs taken off the channel, per lane, in arrival order.
#[derive(Default)]
struct Backlog {
    queue: VecDeque<Job>,
    api: VecDeque<Job>,
    bulk: VecDeque<Job>,
    /// Whether the last transaction was a bulk job's (small jobs go next).
    bulk_went_last: bool,
}

impl Backlog {
    fn len(&self) -> usize {
        self.queue.len() + self.api.len() + self.bulk.len()
    }

    fn push(&mut self, job: Job) {
        match job.lane {
            Lane::Queue => self.queue.push_back(job),
            Lane::Api if job.cost > BULK_COST => self.bulk.push_back(job),
            Lane::Api => self.api.push_back(job),
        }
    }

    /// The next transaction: every queue job, then either one bulk job or
    /// small API jobs up to the budget, alternating when both wait.
    fn next_batch(&mut self, batch: &mut Vec<Job>) {
        batch.extend(self.queue.drain(..));
        let bulk_turn = !self.bulk.is_empty() && (self.api.is_empty() || !self.bulk_went_last);
        self.bulk_went_last = bulk_turn;
        if bulk_turn {
            batch.extend(self.bulk.pop_front());
            return;
        }
        let mut spent = 0;
        while let Some(job) = self.api.front() {
            if spent > 0 && spent + job.cost > API_BUDGET_PER_COMMIT {
                break;
            }
            spent += job.cost.max(1);
            batch.extend(self.api.pop_front());
        }
    }
}

fn run(conn: Connection, mut receiver: mpsc::Receiver<Job>, closing: &AtomicBool) {
    let mut backlog = Backlog::default();
    let mut batch = Vec::new();
    loop {
        if backlog.len() == 0 {
            match receiver.blocking_recv() {
                Some(job) => backlog.push(job),
                None => break,
            }
        }
        while backlog.len() < MAX_BACKLOG {
            match receiver.try_recv() {
                Ok(job) => backlog.push(job),
                Err(_) => break,
            }
        }
        backlog.next_batch(&mut batch);
        commit_batch(&conn, &mut batch);
        if closing.load(Ordering::SeqCst) {
            break;
        }
    }
    receiver.close();
    // Jobs that raced with the close are answered, not run.
    let leftovers = backlog
        .queue
        .into_iter()
        .chain(backlog.api)
        .chain(backlog.bulk)
        .chain(std::iter::from_fn(|| receiver.try_recv().ok()));
    for job in leftovers {
        let (_, reply) = (job.work)(None);
        reply(Err("the database is closing".into()));
    }
    if let Err(error) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "final WAL checkpoint failed; the WAL will be replayed at next start");
    }
}

fn commit_batch(conn: &Connection, batch: &mut Vec<Job>) {
    metrics::histogram!("herald_store_commit_batch_size").record(batch.len() as f64);
    if let Err(error) = conn.execute_batch("BEGIN IMMEDIATE") {
        let message = format!("cannot begin a transaction: {error}");
        for job in batch.drain(..) {
            let (_, reply) = (job.work)(None);
            reply(Err(message.clone()));
        }
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        replies.push(run_in_savepoint(conn, job.work));
    }
    let outcome = conn.execute_batch("COMMIT").map_err(|error| {
        let _ = conn.execute_batch("ROLLBACK");
        tracing::error!(%error, "commit failed; the batch was rolled back");
        format!("commit failed: {error}")
    });
    for reply in replies {
        reply(outcome.clone());
    }
}

fn run_in_savepoint(conn: &Connection, work: Work) -> Reply {
    if let Err(error) = conn.execute_batch("SAVEPOINT job") {
        let (_, reply) = work(None);
        let message = format!("cannot open a savepoint: {error}");
        return Box::new(move |_| reply(Err(message)));
    }
    let (ok, reply) = work(Some(conn));
    let end = if ok {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    if let Err(error) = conn.execute_batch(end) {
        tracing::error!(%error, "cannot close a savepoint");
    }
    reply
}
