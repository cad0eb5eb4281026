//! Settings of the batch API (`[batches]`) and the upstreams batches run
//! against (`[[upstreams]]`). Upstreams are configured on the server only,
//! never taken from a request.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchesConfig {
    /// Largest uploaded file, in bytes (more is answered 413 while streaming).
    pub max_file_bytes: u64,
    /// Most requests (lines) in one batch.
    pub max_requests_per_batch: u64,
    /// Largest input line, in bytes.
    pub max_line_bytes: usize,
    /// Offer the built-in `builtin:echo` upstream (named `echo`) for every
    /// model no configured upstream serves.
    pub echo_upstream: bool,
    /// Simulated latency of each `builtin:echo` answer.
    #[serde(with = "humantime_serde")]
    pub echo_latency: Duration,
    /// Requests in flight at once on this node, across all upstreams.
    pub max_in_flight: usize,
    /// Tries of one request (429, 5xx and connection errors are retried).
    pub max_attempts: u32,
    /// First retry delay; doubles with every try, up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// A leased request (or validation) is taken over after this if its
    /// worker vanished; must exceed every upstream's `timeout`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Longest pause between two looks for batch work.
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
    /// Largest upstream response body kept, in bytes.
    pub max_response_bytes: usize,
    /// Publish `batch.progress` for a running batch at most this often
    /// (when its counts moved); `0s` turns progress events off.
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
}

impl Default for BatchesConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 200 * 1024 * 1024,
            max_requests_per_batch: 50_000,
            max_line_bytes: 1024 * 1024,
            echo_upstream: true,
            echo_latency: Duration::ZERO,
            max_in_flight: 256,
            max_attempts: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(1),
            max_response_bytes: 10 * 1024 * 1024,
            progress_interval: Duration::ZERO,
        }
    }
}

/// One OpenAI-compatible server batches may run against.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `http(s)://host[:port][/prefix]`; the batch's endpoint path
    /// (`/v1/chat/completions`) is appended. `builtin:echo` is the echo server.
    pub base_url: String,
    /// Models it serves: exact names, or a prefix ending in `*`. Empty:
    /// every model no other upstream names.
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra headers (an API key): a literal value or `{ env = "VAR",
    /// prefix = "Bearer " }`, read at start. Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValueSource>,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Non-public address ranges this upstream may be reached at (the
    /// SSRF guard refuses them otherwise; `security.allow_target_cidrs`
    /// applies too).
    #[serde(default)]
    pub allow_cidrs: Vec<IpNet>,
}

fn default_concurrency() -> usize {
    16
}

fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

impl std::fmt::Debug for UpstreamConfig {
    /// Header values stay out of logs and `Debug` output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("models", &self.models)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum HeaderValueSource {
    Literal(String),
    Env {
        env: String,
        #[serde(default)]
        prefix: String,
    },
}

impl HeaderValueSource {
    /// The value to send; `Err` names the unset variable.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Self::Literal(value) => Ok(value.clone()),
            Self::Env { env, prefix } => std::env::var(env)
                .map(|value| format!("{prefix}{value}"))
                .map_err(|_| format!("environment variable {env} is not set")),
        }
    }
}

/// The built-in echo upstream's `base_url`.
pub const ECHO_BASE_URL: &str = "builtin:echo";

pub(super) fn validate(batches: &BatchesConfig, upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
    let fail = |field, message: String| Err(ConfigError { field, message });
    if batches.max_file_bytes == 0 || batches.max_requests_per_batch == 0 || batches.max_line_bytes == 0 {
        return fail("batches", "max_file_bytes, max_requests_per_batch and max_line_bytes must be positive".into());
    }
    if batches.max_in_flight == 0 || batches.max_attempts == 0 {
        return fail("batches", "max_in_flight and max_attempts must be at least 1".into());
    }
    if batches.idle_poll.is_zero() || batches.retry_base.is_zero() {
        return fail("batches", "idle_poll and retry_base must be positive".into());
    }
    let mut names = std::collections::HashSet::new();
    for upstream in upstreams {
        if upstream.name.is_empty() || !names.insert(upstream.name.as_str()) || upstream.name == "echo" {
            return fail(
                "upstreams.name",
                format!("{:?}: names must be non-empty, unique and not \"echo\"", upstream.name),
            );
        }
        if upstream.base_url != ECHO_BASE_URL {
            let url = url::Url::parse(&upstream.base_url)
                .map_err(|e| ConfigError { field: "upstreams.base_url", message: format!("{}: {e}", upstream.name) })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return fail("upstreams.base_url", format!("{}: must be http(s)://host or builtin:echo", upstream.name));
            }
        }
        if upstream.max_concurrency == 0 || upstream.timeout.is_zero() {
            return fail("upstreams", format!("{}: max_concurrency and timeout must be positive", upstream.name));
        }
        if upstream.timeout >= batches.lease {
            return fail("batches.lease", format!("must exceed upstream {}'s timeout", upstream.name));
        }
        if upstream.requests_per_second.is_some_and(|rate| !rate.is_finite() || rate <= 0.0) {
            return fail("upstreams.requests_per_second", format!("{}: must be positive", upstream.name));
        }
        for (name, value) in &upstream.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return fail("upstreams.headers", format!("{}: {name:?} is not a header name", upstream.name));
            }
            value
                .resolve()
                .map_err(|message| ConfigError { field: "upstreams.headers", message: format!("{}: {message}", upstream.name) })?;
        }
    }
    Ok(())
}
