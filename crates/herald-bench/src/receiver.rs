//! A minimal, fast webhook receiver: hyper on 127.0.0.1, answers 204 to
//! everything, counts requests and (when asked) records when each
//! `webhook-id` arrived.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    /// Record arrival instants per webhook-id (latency runs only).
    pub track: AtomicBool,
    pub arrivals: Mutex<HashMap<String, Instant>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let counters = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(Arc::clone(&counters), request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, counters, task })
    }

    pub fn count(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn handle(counters: Arc<Counters>, request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let now = Instant::now();
    let id = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = request.into_body().collect().await;
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if counters.track.load(Ordering::Relaxed)
        && let Some(id) = id
        && let Ok(mut arrivals) = counters.arrivals.lock()
    {
        arrivals.entry(id).or_insert(now);
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}
