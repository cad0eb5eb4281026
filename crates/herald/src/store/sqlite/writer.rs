//! The single writer: one thread owns the only read-write connection and
//! applies every write, many callers' writes per transaction (group commit).
//!
//! SQLite allows one writer at a time; many tasks each opening their own
//! write transaction would contend for that lock (`SQLITE_BUSY`, retries,
//! latency spikes). Instead each write is a job sent over a channel. The
//! thread takes every job that is waiting, runs each inside its own
//! SAVEPOINT (a failing job rolls back alone), commits once, and only then
//! answers the callers. So:
//!
//! - a caller's `Ok` means its changes are committed, and durable when the
//!   connection runs with `synchronous=FULL`;
//! - one fsync covers the whole batch, so throughput grows with load;
//! - no transaction ever waits on anything outside this thread.

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
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

/// Jobs committed together at most; bounds the time a batch holds the lock.
const MAX_JOBS_PER_COMMIT: usize = 512;
/// Jobs waiting before callers feel back-pressure.
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

    /// Runs `work` in the next batch transaction and returns its result once
    /// that transaction has committed.
    pub(super) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = match conn {
                None => Err(closed()),
                Some(conn) => match catch_unwind(AssertUnwindSafe(|| work(conn))) {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Corrupt("a storage operation panicked; it was rolled back".into())),
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
        self.jobs.send(job).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

fn run(conn: Connection, mut receiver: mpsc::Receiver<Job>, closing: &AtomicBool) {
    let mut batch = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, &mut batch);
        if closing.load(Ordering::SeqCst) {
            break;
        }
    }
    receiver.close();
    // Jobs that raced with the close are answered, not run.
    while let Ok(job) = receiver.try_recv() {
        let (_, reply) = job(None);
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
            let (_, reply) = job(None);
            reply(Err(message.clone()));
        }
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        replies.push(run_in_savepoint(conn, job));
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

fn run_in_savepoint(conn: &Connection, job: Job) -> Reply {
    if let Err(error) = conn.execute_batch("SAVEPOINT job") {
        let (_, reply) = job(None);
        let message = format!("cannot open a savepoint: {error}");
        return Box::new(move |_| reply(Err(message)));
    }
    let (ok, reply) = job(Some(conn));
    let end = if ok { "RELEASE job" } else { "ROLLBACK TO job; RELEASE job" };
    if let Err(error) = conn.execute_batch(end) {
        tracing::error!(%error, "cannot close a savepoint");
    }
    reply
}
