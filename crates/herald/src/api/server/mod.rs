//! The HTTP accept loop: hyper-util's HTTP/1.1 + HTTP/2 server around the
//! API router, with the connection limits of `[http]`.
//!
//! Failure policies:
//! - At most `max_connections` connections are open; further ones wait in
//!   the kernel's accept queue and hold no descriptor in Herald.
//! - A connection must show its protocol (first bytes) and then each
//!   HTTP/1.1 request head within `header_read_timeout`, or it is closed.
//! - A connection on which no byte moves either way for `idle_timeout` is
//!   closed (see [`io::ConnectionIo`]).
//! - A request body that stops arriving for `request_body_timeout` is
//!   answered 408 by the body reader (`api::json`); a request that takes
//!   longer than `request_timeout` in all is answered 503.
//! - Rejections hyper makes itself (malformed request, URI or headers too
//!   large) get the JSON error body like every other error.
//! - At shutdown no connection is accepted; open ones finish their current
//!   request and close.

mod io;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::error::ApiError;
use crate::config::HttpConfig;
use io::ConnectionIo;

/// Serves `router` on `listener` until `shutdown`, then waits for open
/// connections to finish their current request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = with_request_limits(router, &config);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                // Out of descriptors (or a connection reset before accept):
                // wait a little rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let config = config.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            serve_connection(stream, app, &config, shutdown).await;
            drop(permit);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The per-request limits: a body that stalls fails its read (the body
/// reader answers 408) and the whole request has a deadline.
fn with_request_limits(router: Router, config: &HttpConfig) -> Router {
    let deadline = config.request_timeout;
    router
        .layer(RequestBodyTimeoutLayer::new(config.request_body_timeout))
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                request_deadline(deadline, request, next).await
            },
        ))
}

/// A publish cut off here may still commit (its write is already queued):
/// retrying with the same `Idempotency-Key` is safe, and the message says so.
async fn request_deadline(
    deadline: Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request did not complete within {}; it may still take effect: retry with the same Idempotency-Key",
            humantime::format_duration(deadline)
        ))
        .into_response(),
    }
}

async fn serve_connection(mut stream: TcpStream, app: Router, config: &HttpConfig, shutdown: CancellationToken) {
    // hyper-util reads the first bytes to choose HTTP/1.1 or HTTP/2 with no
    // time limit of its own: bound that wait by the header timeout.
    let first_bytes = tokio::time::timeout(config.header_read_timeout, io::read_protocol_prefix(&mut stream));
    let prefix = tokio::select! {
        () = shutdown.cancelled() => return,
        read = first_bytes => match read {
            Ok(Ok(prefix)) if !prefix.is_empty() => prefix,
            _ => return,
        },
    };
    let io = TokioIo::new(ConnectionIo::new(stream, prefix, config.idle_timeout));
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        tower::ServiceExt::oneshot(app.clone(), request)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection closed with an error");
    }
}
