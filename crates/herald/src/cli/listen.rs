//! `herald listen`: a local webhook receiver for developers. It verifies
//! every request like a careful consumer would, prints one line per
//! delivery and the pretty-printed body, and can simulate failing
//! receivers so retries can be watched.
//!
//! Answers: a verified message gets `--status` (default 200), or 500 when
//! `--fail-rate` draws a failure; a malformed request gets 400 and one that
//! fails authentication 401, both with a JSON `{"error": reason}`. Only
//! messages answered 2xx are recorded in the replay guard, so the sender's
//! retries of failed deliveries are verified afresh; a message already
//! answered 2xx is acknowledged again with 200 and marked `duplicate`
//! without being printed twice. A full replay guard fails closed with 503.

pub(super) mod report;
mod shutdown;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_signature::{Clock, InMemoryReplayGuard, ReplayError, SystemClock};
use serde_json::json;

use self::report::Delivery;
use super::keys::trust::{Trust, TrustArgs};

/// Ids remembered by the replay guard; at 100 deliveries a second with the
/// default tolerance this holds a full window.
const REPLAY_CAPACITY: usize = 100_000;

#[derive(clap::Args)]
pub struct ListenArgs {
    /// Port to listen on; 0 picks a free one (the address is printed).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[command(flatten)]
    trust: TrustArgs,
    /// Status for verified requests; a non-2xx value simulates a failing receiver.
    #[arg(long, default_value_t = 200, value_parser = parse_status)]
    status: u16,
    /// Fraction of verified requests answered 500 instead (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0, value_parser = parse_fail_rate)]
    fail_rate: f64,
}

fn parse_status(text: &str) -> Result<u16, String> {
    let status: u16 = text
        .parse()
        .map_err(|_| "expected an HTTP status code such as 200 or 503".to_owned())?;
    if (200..=599).contains(&status) {
        Ok(status)
    } else {
        Err("expected a status from 200 to 599".to_owned())
    }
}

fn parse_fail_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| "expected a number from 0.0 to 1.0".to_owned())?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("expected a number from 0.0 to 1.0".to_owned())
    }
}

/// Shared by every request; fixed at start-up except the replay guard.
struct Receiver {
    trust: Trust,
    /// Ids of messages answered 2xx.
    replays: InMemoryReplayGuard,
    /// Answer for verified requests (`--status`).
    status: StatusCode,
    /// Probability of answering 500 instead (`--fail-rate`).
    fail_rate: f64,
}

pub async fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    let trust = match Trust::load(&args.trust).await {
        Ok(trust) => trust,
        Err(error) => {
            eprintln!("herald listen: {error:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let status = StatusCode::from_u16(args.status).context("--status")?;
    let address = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let shutdown = shutdown::signals().context("installing the Ctrl-C handler")?;
    // Tests and scripts read this first line to find the port.
    println!("listening on http://{local}");
    for line in trust.describe_keys() {
        println!("  trusting {line}");
    }
    if !status.is_success() || args.fail_rate > 0.0 {
        println!("  simulating failures: status {status}, fail rate {}", args.fail_rate);
    }
    let receiver = Arc::new(Receiver {
        trust,
        replays: InMemoryReplayGuard::new(REPLAY_CAPACITY),
        status,
        fail_rate: args.fail_rate,
    });
    let app = Router::new().fallback(receive).with_state(receiver);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving")?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn receive(State(receiver): State<Arc<Receiver>>, method: Method, headers: HeaderMap, body: Bytes) -> Response {
    if method != Method::POST {
        return reject(StatusCode::METHOD_NOT_ALLOWED, "webhooks are POST requests");
    }
    let now = SystemClock.now_unix_seconds();
    let delivery = Delivery::new(&headers, &body);
    let verified = match receiver.trust.verify(&headers, &body, now) {
        Ok(verified) => verified,
        Err(rejection) => {
            let status = if rejection.is_malformed() {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            };
            let reason = rejection.to_string();
            delivery.print(&format!("invalid: {reason}"), status, false);
            return reject(status, &reason);
        }
    };
    let matched = receiver.trust.describe_match(&verified);
    if !receiver.status.is_success() {
        delivery.print(&format!("valid ({matched}), simulated failure"), receiver.status, true);
        return answer(receiver.status, json!({"status": "simulated failure (--status)"}));
    }
    if receiver.fail_rate > 0.0 && rand::random_bool(receiver.fail_rate) {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        delivery.print(&format!("valid ({matched}), simulated failure"), status, true);
        return answer(status, json!({"status": "simulated failure (--fail-rate)"}));
    }
    match verified.record(&receiver.replays) {
        Ok(()) => {
            delivery.print(&format!("valid ({matched})"), receiver.status, true);
            answer(receiver.status, json!({"status": "accepted"}))
        }
        Err(ReplayError::Replayed) => {
            delivery.print("duplicate: already accepted, acknowledged again", StatusCode::OK, false);
            answer(StatusCode::OK, json!({"status": "duplicate"}))
        }
        Err(error) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            delivery.print(&format!("refused: {error}"), status, false);
            reject(status, &error.to_string())
        }
    }
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    // These statuses carry no body (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
    if matches!(status.as_u16(), 204 | 205 | 304) {
        return status.into_response();
    }
    (status, axum::Json(body)).into_response()
}

fn reject(status: StatusCode, reason: &str) -> Response {
    answer(status, json!({ "error": reason }))
}
