//! Logs (tracing) and metrics (Prometheus), set up once per process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the log subscriber; `RUST_LOG` overrides the configured filter.
/// Later calls (tests starting several apps) are no-ops.
pub fn init_tracing(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use. `None` if
/// another recorder was installed first.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in HISTOGRAM_BUCKETS {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
                    .ok()?;
            }
            let recorder = builder.install_recorder().ok()?;
            describe();
            Some(recorder)
        })
        .clone()
}

/// Buckets per histogram, fitted to its unit and range. A histogram not
/// listed here is rendered as a summary, so each new one belongs here.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    // One HTTP attempt: milliseconds to the 5-minute timeout ceiling.
    (
        "herald_delivery_attempt_duration_seconds",
        &[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 300.0,
        ],
    ),
    // Publish to success: immediate, or hours later through the retry
    // schedule (up to max_age, a day by default).
    (
        "herald_delivery_latency_seconds",
        &[
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 7200.0, 18000.0, 36000.0, 86400.0,
        ],
    ),
    // A count of writes per group commit, not a time.
    (
        "herald_store_commit_batch_size",
        &[
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
        ],
    ),
];

/// Histograms buffer raw samples until rendered: fold them in every few
/// seconds even when nobody scrapes, so memory stays flat.
pub async fn upkeep(handle: PrometheusHandle, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "herald_events_published_total",
        "Events accepted and durably committed."
    );
    describe_counter!("herald_deliveries_claimed_total", "Deliveries leased for an attempt.");
    describe_counter!(
        "herald_delivery_attempts_total",
        "Attempts by outcome (success or error kind)."
    );
    describe_counter!(
        "herald_delivery_outcomes_total",
        "What attempts led to: succeeded, retrying, failed, stale."
    );
    describe_histogram!(
        "herald_delivery_attempt_duration_seconds",
        "Duration of one HTTP attempt."
    );
    describe_histogram!(
        "herald_delivery_latency_seconds",
        "From event publish to its successful delivery."
    );
    describe_histogram!(
        "herald_store_commit_batch_size",
        "Writes committed together (group commit)."
    );
    describe_gauge!(
        "herald_deliveries_pending",
        "Unfinished deliveries (waiting or in flight)."
    );
    describe_gauge!(
        "herald_deliveries_retrying",
        "Unfinished deliveries that failed at least once."
    );
    describe_gauge!("herald_deliveries_in_flight", "Deliveries leased right now.");
    describe_gauge!(
        "herald_oldest_due_delivery_age_seconds",
        "How late the most overdue delivery is."
    );
}
