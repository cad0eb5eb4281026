//! Configuration: defaults, then a TOML file (`--config`), then `HERALD_*`
//! environment variables and command-line flags (flags win). `herald config`
//! prints the result.
//!
//! Every field has a default, so `herald serve` needs no set-up. Values are
//! validated once here; the rest of the program trusts them.

mod batches;
mod durations;
mod health;
mod node;

pub use health::{HealthConfig, RetentionConfig};
pub use batches::{BatchesConfig, ECHO_BASE_URL, HeaderValueSource, UpstreamConfig};
pub use node::{NodeConfig, Role};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::store::sqlite::Durability;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Where the embedded database and the generated admin key live.
    pub data_dir: PathBuf,
    pub storage: StorageSettings,
    pub node: NodeConfig,
    pub delivery: DeliveryConfig,
    pub health: HealthConfig,
    pub retention: RetentionConfig,
    pub security: SecurityConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    /// The master keys that seal signing secrets. Never a setting (never
    /// printed, never in a file of settings): from `HERALD_MASTER_KEY` and
    /// `HERALD_PREVIOUS_MASTER_KEYS` (see `master_key`); `None` on SQLite
    /// means `<data_dir>/master.key`.
    #[serde(skip)]
    pub master_keys: Option<crate::domain::secret::Keyring>,
    /// The batch API (`/v1/files`, `/v1/batches`).
    pub batches: BatchesConfig,
    /// Servers batches run against (`[[upstreams]]`); `builtin:echo` is
    /// offered besides unless `batches.echo_upstream` is off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// `postgres://…`: use this PostgreSQL database (any number of nodes may
    /// share it). Unset: the embedded SQLite database in `data_dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// SQLite: `full`: an acknowledged event survives a power cut (fsync per
    /// commit, grouped). `process`: it survives a process crash only.
    /// (PostgreSQL always commits with `synchronous_commit = on`.)
    pub durability: Durability,
    /// SQLite: read-only connections for queries.
    pub read_connections: usize,
    /// PostgreSQL: connections in this node's pool.
    pub pool_size: usize,
    /// PostgreSQL: apply pending migrations at start (under an advisory
    /// lock). Off: run `herald migrate` first.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Limit for one attempt: connect, send, and read the response.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in flight at once, in all.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one webhook.
    pub max_in_flight_per_endpoint: u32,
    /// Delays before the 2nd, 3rd, … attempts (the first is immediate).
    #[serde(with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Each delay varies by up to ± this fraction.
    pub jitter: f64,
    /// No attempt is made later than this after the event.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// The longest `Retry-After` (on 429/503) that is honoured.
    #[serde(with = "humantime_serde")]
    pub retry_after_max: Duration,
    /// A claimed delivery is reclaimable after this if its worker vanished.
    /// Unset: 2 × timeout + 30 s, at least 60 s. A job may wait up to one
    /// timeout in its endpoint's local queue, then take one timeout itself.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub lease: Option<Duration>,
    /// Response body bytes kept per attempt in the delivery log.
    pub response_excerpt_bytes: usize,
    /// Longest pause between two looks at the queue when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub idle_poll: Duration,
    /// How long shutdown waits for in-flight attempts.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Extra PEM root certificates trusted for HTTPS endpoints (a private
    /// CA), beside the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Address ranges Herald may deliver to even though they are not public
    /// (e.g. `127.0.0.0/8` for local development). Empty by default.
    pub allow_target_cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest serialised event payload, in bytes.
    pub max_payload_bytes: usize,
    /// Most events in one `events:batchCreate`.
    pub max_batch_events: usize,
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Events per second one project may publish (a batch counts each
    /// event), enforced per node: with several nodes a project may publish
    /// this much on each. `0` turns the limit off.
    pub publish_rate_per_project: f64,
    /// Events a project may publish at once above its rate (the token
    /// bucket's size). Only used when the rate is set.
    pub publish_burst_per_project: u32,
    /// Webhooks one project may have (deleted ones do not count).
    pub max_webhooks_per_project: usize,
    /// Deliveries one publish or batch may create (events × matching
    /// webhooks): bounds the work one request puts in one commit.
    pub max_fanout_per_request: usize,
}

/// How the HTTP server treats connections: slow, idle and silent clients
/// are cut off so that they cannot hold descriptors.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Time a client has to send a complete request head. On HTTP/1.1 this
    /// also bounds how long a kept-alive connection may wait for its next
    /// request.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed (HTTP/1.1 and HTTP/2). Longer than `request_timeout`, so a
    /// slow handler is never cut off by it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait for the next piece of a request body: a body that stops
    /// arriving is answered `408`.
    #[serde(with = "humantime_serde")]
    pub request_body_timeout: Duration,
    /// The longest a request may take, body upload included (then `503`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; more wait in the kernel's accept queue
    /// without holding a descriptor in Herald.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `herald=debug,info`. `RUST_LOG` wins.
    pub filter: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./herald-data"),
            storage: StorageSettings::default(),
            node: NodeConfig::default(),
            delivery: DeliveryConfig::default(),
            health: HealthConfig::default(),
            retention: RetentionConfig::default(),
            security: SecurityConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            master_keys: None,
            batches: BatchesConfig::default(),
            upstreams: Vec::new(),
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            database_url: None,
            durability: Durability::Full,
            read_connections: 4,
            pool_size: 16,
            migrate_on_start: true,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let policy = crate::delivery::RetryPolicy::default();
        Self {
            timeout: Duration::from_secs(15),
            max_in_flight: 1024,
            max_in_flight_per_endpoint: 64,
            retry_schedule: policy.schedule,
            jitter: policy.jitter,
            max_age: policy.max_age,
            retry_after_max: policy.retry_after_max,
            lease: None,
            response_excerpt_bytes: 1024,
            idle_poll: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 256 * 1024,
            max_batch_events: 1000,
            max_request_bytes: 16 * 1024 * 1024,
            publish_rate_per_project: 0.0,
            publish_burst_per_project: 100,
            max_webhooks_per_project: 100,
            max_fanout_per_request: 10_000,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

impl Config {
    /// Parses a TOML document; absent fields keep their defaults.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field, message: &str| {
            Err(ConfigError {
                field,
                message: message.to_owned(),
            })
        };
        let d = &self.delivery;
        if d.timeout.is_zero() || d.timeout > Duration::from_secs(300) {
            return fail("delivery.timeout", "must be between 1ms and 5m");
        }
        if d.lease
            .is_some_and(|lease| lease < d.timeout * 2 + Duration::from_secs(5))
        {
            return fail(
                "delivery.lease",
                "must be at least 2 × delivery.timeout + 5s (queue wait plus the request), or live attempts would be taken over",
            );
        }
        if d.max_in_flight == 0 || d.max_in_flight_per_endpoint == 0 {
            return fail("delivery.max_in_flight", "limits must be at least 1");
        }
        if !(0.0..=1.0).contains(&d.jitter) {
            return fail("delivery.jitter", "must be between 0.0 and 1.0");
        }
        if d.retry_schedule.len() > 100 {
            return fail("delivery.retry_schedule", "at most 100 retries");
        }
        if d.max_age.is_zero() {
            return fail("delivery.max_age", "must be positive");
        }
        if d.retry_schedule.iter().any(|delay| *delay > d.max_age) {
            return fail(
                "delivery.retry_schedule",
                "a delay longer than delivery.max_age would never be waited for",
            );
        }
        if d.idle_poll.is_zero() {
            return fail("delivery.idle_poll", "must be positive");
        }
        if self.storage.read_connections == 0 {
            return fail("storage.read_connections", "must be at least 1");
        }
        if self.storage.pool_size < 2 {
            return fail("storage.pool_size", "must be at least 2");
        }
        if let Some(url) = &self.storage.database_url
            && let Err(message) = crate::store::postgres::check_url(url)
        {
            return fail("storage.database_url", &message);
        }
        self.node.validate()?;
        self.health.validate()?;
        self.retention.validate(d.max_age)?;
        let l = &self.limits;
        if l.max_payload_bytes < 1024 || l.max_batch_events == 0 || l.max_request_bytes < l.max_payload_bytes {
            return fail(
                "limits",
                "max_payload_bytes >= 1024, max_batch_events >= 1, max_request_bytes >= max_payload_bytes",
            );
        }
        if !l.publish_rate_per_project.is_finite() || l.publish_rate_per_project < 0.0 {
            return fail(
                "limits.publish_rate_per_project",
                "must be 0 (off) or a positive number",
            );
        }
        if l.max_webhooks_per_project == 0 || l.max_fanout_per_request == 0 {
            return fail(
                "limits",
                "max_webhooks_per_project and max_fanout_per_request must be at least 1",
            );
        }
        if l.publish_rate_per_project > 0.0 && l.publish_burst_per_project == 0 {
            return fail("limits.publish_burst_per_project", "must be at least 1");
        }
        let h = &self.http;
        if [
            h.header_read_timeout,
            h.idle_timeout,
            h.request_body_timeout,
            h.request_timeout,
        ]
        .iter()
        .any(Duration::is_zero)
        {
            return fail("http", "timeouts must be positive");
        }
        if h.request_body_timeout > h.request_timeout {
            return fail(
                "http.request_body_timeout",
                "must not exceed http.request_timeout, or a stalled body would get 503 instead of 408",
            );
        }
        if h.idle_timeout <= h.request_timeout {
            return fail(
                "http.idle_timeout",
                "must exceed http.request_timeout, or a slow request's connection would be cut",
            );
        }
        if h.max_connections == 0 {
            return fail("http.max_connections", "must be at least 1");
        }
        batches::validate(&self.batches, &self.upstreams)
    }

    /// The storage backend these settings select.
    pub fn storage_config(&self) -> crate::store::StorageConfig {
        use crate::store::{StorageConfig, postgres::PostgresOptions, sqlite::SqliteOptions};
        match &self.storage.database_url {
            Some(url) => StorageConfig::Postgres(PostgresOptions {
                url: url.clone(),
                pool_size: self.storage.pool_size,
                migrate_on_start: self.storage.migrate_on_start,
                node_name: self.node_name(),
                heartbeat: self.node.heartbeat,
                node_timeout: self.node.timeout,
                master_keys: self.master_keys.clone(),
            }),
            None => StorageConfig::Sqlite(SqliteOptions {
                data_dir: self.data_dir.clone(),
                durability: self.storage.durability,
                read_connections: self.storage.read_connections,
                master_keys: self.master_keys.clone(),
                ..SqliteOptions::default()
            }),
        }
    }

    /// This node's name: as configured, else `<hostname>:<port>`.
    pub fn node_name(&self) -> String {
        self.node.name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "herald".into());
            format!("{host}:{}", self.listen.port())
        })
    }

    /// `herald config`'s view: the database password, if any, hidden.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        if let Some(url) = &shown.storage.database_url {
            shown.storage.database_url = Some(crate::store::postgres::redact_url(url));
        }
        shown
    }

    /// The lease: as configured, else derived from the timeout.
    pub fn lease(&self) -> Duration {
        let d = &self.delivery;
        d.lease
            .unwrap_or_else(|| (d.timeout * 2 + Duration::from_secs(30)).max(Duration::from_secs(60)))
    }

    pub fn retry_policy(&self) -> crate::delivery::RetryPolicy {
        crate::delivery::RetryPolicy {
            schedule: self.delivery.retry_schedule.clone(),
            jitter: self.delivery.jitter,
            max_age: self.delivery.max_age,
            retry_after_max: self.delivery.retry_after_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip_through_toml() {
        let config = Config::default();
        config.validate().expect("defaults are valid");
        let text = config.to_toml();
        for delay in ["\"5s\"", "\"5m\"", "\"30m\"", "\"2h\"", "\"5h\"", "\"10h\""] {
            assert!(text.contains(delay), "{delay} missing from {text}");
        }
        assert_eq!(Config::from_toml(&text).expect("parses"), config);
    }

    #[test]
    fn partial_files_keep_defaults_and_unknown_keys_fail() {
        let config = Config::from_toml("[delivery]\ntimeout = \"30s\"\n").expect("parses");
        assert_eq!(config.delivery.timeout, Duration::from_secs(30));
        assert_eq!(config.delivery.max_in_flight, 1024);
        assert!(Config::from_toml("[delivery]\ntimeot = \"30s\"\n").is_err());
        assert!(Config::from_toml("[security]\nallow_target_cidrs = [\"not-a-cidr\"]\n").is_err());
    }

    #[test]
    fn the_lease_follows_the_timeout_unless_set() {
        let mut config = Config::default();
        assert_eq!(config.lease(), Duration::from_secs(60));
        config.delivery.timeout = Duration::from_secs(60);
        assert_eq!(config.lease(), Duration::from_secs(150));
        config.validate().expect("a long timeout alone is valid");
        config.delivery.lease = Some(Duration::from_secs(600));
        assert_eq!(config.lease(), Duration::from_secs(600));
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = Config::default();
        config.delivery.lease = Some(Duration::from_secs(34));
        assert_eq!(config.validate().map_err(|e| e.field), Err("delivery.lease"));
        config.delivery.lease = Some(Duration::from_secs(35));
        assert!(config.validate().is_ok());
        let mut config = Config::default();
        config.delivery.retry_schedule = vec![Duration::from_secs(25 * 3600)];
        assert_eq!(config.validate().map_err(|e| e.field), Err("delivery.retry_schedule"));
        let mut config = Config::default();
        config.delivery.jitter = 1.5;
        assert_eq!(config.validate().map_err(|e| e.field), Err("delivery.jitter"));
    }
}
