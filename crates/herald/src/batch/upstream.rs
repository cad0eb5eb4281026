//! The upstreams batches run against: which one serves a model, and one
//! request sent to it (over HTTP, or answered by `builtin:echo`).
//!
//! Every HTTP upstream has its own pooled client over the SSRF-guarded
//! connector: the upstream is operator-configured, so its `allow_cidrs`
//! (plus `security.allow_target_cidrs`) may open non-public addresses
//! for it alone; everything else is refused at connect time, like a
//! webhook. Redirects are never followed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ipnet::IpNet;
use tokio::sync::Mutex;

use super::echo;
use crate::config::{ECHO_BASE_URL, UpstreamConfig};
use crate::delivery::client::{RetryAfter, parse_retry_after, trust_roots};
use crate::net::connector::GuardedConnector;
use crate::net::ssrf::AddressPolicy;

/// The echo upstream's name.
pub const ECHO: &str = "echo";

/// What came back from one try.
#[derive(Debug)]
pub enum Answer {
    Status {
        code: u16,
        request_id: Option<String>,
        retry_after: Option<RetryAfter>,
        body: Vec<u8>,
    },
    /// No answer: connection refused or dropped, timeout, blocked address,
    /// body over the limit.
    Failed { code: &'static str, message: String },
}

enum Transport {
    Echo { latency: Duration },
    Http {
        client: Box<Client<HttpsConnector<GuardedConnector>, Full<Bytes>>>,
        base_url: String,
        /// Resolved at start; never logged.
        headers: Vec<(HeaderName, HeaderValue)>,
        timeout: Duration,
    },
}

pub struct Upstream {
    pub name: String,
    models: Vec<String>,
    pub max_concurrency: usize,
    transport: Transport,
    /// The earliest instant the next request may start (rate limit).
    pacing: Option<(Duration, Mutex<tokio::time::Instant>)>,
}

impl Upstream {
    fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => pattern == model,
        })
    }

    /// Waits for this upstream's rate limit, if it has one.
    async fn pace(&self) {
        let Some((interval, next)) = &self.pacing else { return };
        let start = {
            let mut next = next.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + *interval;
            start
        };
        tokio::time::sleep_until(start).await;
    }

    /// Sends one request (`path`: the batch's endpoint) with its stable
    /// `Idempotency-Key`, reading at most `max_body` bytes of the answer.
    pub async fn send(&self, path: &str, body: Bytes, idempotency_key: &str, max_body: usize) -> Answer {
        self.pace().await;
        match &self.transport {
            Transport::Echo { latency } => {
                if !latency.is_zero() {
                    tokio::time::sleep(*latency).await;
                }
                echo::answer(path, &body)
            }
            Transport::Http {
                client,
                base_url,
                headers,
                timeout,
            } => {
                let deadline = tokio::time::Instant::now() + *timeout;
                let mut request = Request::post(format!("{base_url}{path}"))
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .header(USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
                    .header("idempotency-key", idempotency_key);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let request = match request.body(Full::new(body)) {
                    Ok(request) => request,
                    Err(error) => {
                        return Answer::Failed {
                            code: "invalid_request",
                            message: format!("cannot build the request: {error}"),
                        };
                    }
                };
                let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(error)) => {
                        return Answer::Failed {
                            code: "upstream_unreachable",
                            message: error_chain(&error),
                        };
                    }
                    Err(_) => {
                        return Answer::Failed {
                            code: "upstream_timeout",
                            message: format!("no answer within {timeout:?}"),
                        };
                    }
                };
                let code = response.status().as_u16();
                let retry_after = response.headers().get(http::header::RETRY_AFTER).and_then(parse_retry_after);
                let request_id = response
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let mut body = response.into_body();
                let mut read = Vec::new();
                loop {
                    match tokio::time::timeout_at(deadline, body.frame()).await {
                        Ok(Some(Ok(frame))) => {
                            if let Some(data) = frame.data_ref() {
                                if read.len() + data.len() > max_body {
                                    return Answer::Failed {
                                        code: "response_too_large",
                                        message: format!("the answer is larger than {max_body} bytes"),
                                    };
                                }
                                read.extend_from_slice(data);
                            }
                        }
                        Ok(None) => break,
                        Ok(Some(Err(error))) => {
                            return Answer::Failed {
                                code: "upstream_unreachable",
                                message: format!("the answer broke off: {error}"),
                            };
                        }
                        Err(_) => {
                            return Answer::Failed {
                                code: "upstream_timeout",
                                message: format!("the answer did not complete within {timeout:?}"),
                            };
                        }
                    }
                }
                Answer::Status {
                    code,
                    request_id,
                    retry_after,
                    body: read,
                }
            }
        }
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Every configured upstream, plus `builtin:echo` when enabled.
pub struct Upstreams {
    /// In configuration order; echo (when enabled) last, serving any model.
    list: Vec<Arc<Upstream>>,
    by_name: HashMap<String, Arc<Upstream>>,
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {name}: {message}")]
pub struct UpstreamSetupError {
    pub name: String,
    pub message: String,
}

impl Upstreams {
    pub fn new(
        configs: &[UpstreamConfig],
        echo: Option<Duration>,
        global_allow: &[IpNet],
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, UpstreamSetupError> {
        let mut list = Vec::new();
        for config in configs {
            list.push(Arc::new(Self::build(config, global_allow, ca_file)?));
        }
        if let Some(latency) = echo {
            list.push(Arc::new(Upstream {
                name: ECHO.into(),
                models: vec!["*".into()],
                max_concurrency: usize::MAX / 2,
                transport: Transport::Echo { latency },
                pacing: None,
            }));
        }
        let by_name = list.iter().map(|u| (u.name.clone(), Arc::clone(u))).collect();
        Ok(Self { list, by_name })
    }

    fn build(
        config: &UpstreamConfig,
        global_allow: &[IpNet],
        ca_file: Option<&std::path::Path>,
    ) -> Result<Upstream, UpstreamSetupError> {
        let fail = |message: String| UpstreamSetupError {
            name: config.name.clone(),
            message,
        };
        let models = if config.models.is_empty() {
            vec!["*".into()]
        } else {
            config.models.clone()
        };
        let transport = if config.base_url == ECHO_BASE_URL {
            Transport::Echo { latency: Duration::ZERO }
        } else {
            let mut allowed = global_allow.to_vec();
            allowed.extend(config.allow_cidrs.iter().copied());
            let policy = Arc::new(AddressPolicy::new(allowed));
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(trust_roots(ca_file).map_err(|e| fail(e.to_string()))?)
                .with_no_client_auth();
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_all_versions()
                .wrap_connector(GuardedConnector::new(policy, config.timeout.min(Duration::from_secs(10))));
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(config.max_concurrency)
                .build(https);
            let mut headers = Vec::new();
            for (name, source) in &config.headers {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| fail(e.to_string()))?;
                let mut value = HeaderValue::from_str(&source.resolve().map_err(fail)?)
                    .map_err(|_| fail(format!("the value of header {name} is not a valid header value")))?;
                value.set_sensitive(true);
                headers.push((name, value));
            }
            Transport::Http {
                client: Box::new(client),
                base_url: config.base_url.trim_end_matches('/').to_owned(),
                headers,
                timeout: config.timeout,
            }
        };
        let pacing = config
            .requests_per_second
            .map(|rate| (Duration::from_secs_f64(1.0 / rate), Mutex::new(tokio::time::Instant::now())));
        Ok(Upstream {
            name: config.name.clone(),
            models,
            max_concurrency: config.max_concurrency,
            transport,
            pacing,
        })
    }

    /// The upstream serving `model`: the first naming it (exactly or by
    /// prefix), else the first that serves every model.
    pub fn for_model(&self, model: &str) -> Option<&Arc<Upstream>> {
        let explicit = self
            .list
            .iter()
            .find(|u| u.models.iter().any(|m| m != "*") && u.serves(model));
        explicit.or_else(|| self.list.iter().find(|u| u.serves(model)))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }
}
