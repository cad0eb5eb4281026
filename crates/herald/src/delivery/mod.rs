//! The delivery engine: claims due deliveries from the store, makes one
//! signed HTTP attempt each, and records the outcome.
//!
//! - [`dispatcher`]: the loop (claim → attempt → complete) and its in-flight
//!   accounting; [`Dispatcher::run_once`] drives one step for tests.
//! - [`attempt`]: one attempt, turned into a [`crate::store::Completion`].
//! - [`manual`]: redeliveries and pings, attempts outside the schedule.
//! - [`retry`]: the retry policy, a pure function.
//! - [`client`]: the pooled, SSRF-guarded HTTP client.
//!
//! Invariants: no store transaction is open while an HTTP request is in
//! flight (claim commits first, completion is a new transaction); every
//! attempt that was made is recorded; a delivery is finished only by the
//! worker holding its current lease.

pub mod attempt;
pub mod client;
pub mod dispatcher;
mod failure_log;
pub mod manual;
pub mod retry;

pub use dispatcher::{Dispatcher, DispatcherConfig};
pub use manual::ManualAttempts;
pub use retry::{FixedJitter, Jitter, RandomJitter, RetryPolicy};
