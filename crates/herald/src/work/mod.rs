//! Leased work: one runner loop that several kinds of work share.
//!
//! A kind of work ([`WorkKind`]) says how to *claim* jobs (a short
//! transaction that leases them under a fresh token and commits before any
//! job starts), how to *execute* one (outside any transaction; a failure is
//! an outcome, never an error) and how to *complete* a batch of outcomes
//! (fenced by each lease's token: a worker whose lease lapsed and was taken
//! over changes nothing). The [`Runner`] owns the loop: it keeps at most
//! `max_in_flight` jobs running, batches completions, wakes on the kind's
//! notifier, on freed room or after `idle_poll`, and offers a single step
//! ([`Runner::run_once`]) that tests call instead of sleeping.
//!
//! Batch validation and batch requests are the kinds today (`batch`);
//! webhook deliveries keep their own dispatcher (`delivery`), whose claim
//! has per-endpoint adaptive caps and prefetch this runner does not need.

mod runner;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

pub use runner::{Runner, RunnerConfig};

use crate::store::StoreResult;

#[async_trait]
pub trait WorkKind: Send + Sync + 'static {
    type Job: Send + 'static;
    /// Cloned only to retry a failed completion (which fencing makes safe).
    type Outcome: Clone + Send + 'static;

    /// For logs and metrics.
    fn name(&self) -> &'static str;
    /// Leases up to `room` jobs; the leases are committed when this returns.
    async fn claim(&self, room: usize) -> StoreResult<Vec<Self::Job>>;
    /// Performs one job. Never holds a transaction; every failure is an outcome.
    async fn execute(&self, job: Self::Job) -> Self::Outcome;
    /// Persists outcomes, fenced by each job's lease.
    async fn complete(&self, outcomes: Vec<Self::Outcome>) -> StoreResult<()>;
    /// Work between rounds (ending finished batches); returns how many
    /// things it changed.
    async fn between_rounds(&self) -> StoreResult<usize> {
        Ok(0)
    }
    /// Notified when new work may be claimable.
    fn notifier(&self) -> Arc<Notify>;
}
