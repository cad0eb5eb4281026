//! `herald serve` and `herald config`: settings from defaults, the config
//! file, `HERALD_*` variables and flags (in rising precedence).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;

use crate::admin_key::{self, AdminKey};
use crate::app::{self, Dependencies};
use crate::config::{Config, LogFormat, Role};
use crate::store::sqlite::Durability;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see `herald config` for every setting).
    #[arg(long, env = "HERALD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of the embedded database and admin key [default: ./herald-data].
    #[arg(long, env = "HERALD_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "HERALD_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Allow deliveries to this non-public range, e.g. 127.0.0.0/8 (repeatable;
    /// added to the config file's list).
    /// A bare address means that address alone (/32 or /128).
    #[arg(
        long = "allow-target-cidr",
        env = "HERALD_ALLOW_TARGET_CIDRS",
        value_delimiter = ',',
        value_name = "CIDR",
        value_parser = parse_cidr
    )]
    allow_target_cidrs: Vec<IpNet>,
    /// `full` (survives power loss) or `process` (survives a crash only).
    #[arg(long, env = "HERALD_DURABILITY", value_parser = parse_durability)]
    durability: Option<Durability>,
    /// Timeout of one delivery attempt, e.g. 15s.
    #[arg(long, env = "HERALD_DELIVERY_TIMEOUT", value_parser = humantime::parse_duration)]
    delivery_timeout: Option<Duration>,
    /// Delays before each retry, e.g. "5s,5m,30m,2h,5h,10h".
    #[arg(long, env = "HERALD_RETRY_SCHEDULE", value_delimiter = ',', value_parser = parse_retry_delay)]
    retry_schedule: Option<Vec<Duration>>,
    /// How long a claimed delivery stays leased, e.g. 2m [default: 2 × timeout + 30s, at least 60s].
    #[arg(long, env = "HERALD_LEASE", value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Extra PEM root certificates to trust for HTTPS endpoints (private CA).
    #[arg(long, env = "HERALD_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Attempts in flight at once, in all.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Attempts in flight at once to one webhook.
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT_PER_ENDPOINT")]
    max_in_flight_per_endpoint: Option<u32>,
    /// PostgreSQL database to use instead of the embedded one, e.g.
    /// postgres://herald@db.internal/herald (any number of nodes may share it).
    #[arg(long, env = "HERALD_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: Option<String>,
    /// What this node runs: api, worker or all.
    #[arg(long, env = "HERALD_ROLE", value_parser = parse_role)]
    role: Option<Role>,
    /// This node's name among those sharing a database [default: <hostname>:<port>].
    #[arg(long, env = "HERALD_NODE_NAME", value_name = "NAME")]
    node_name: Option<String>,
    /// Do not apply pending migrations at start (run `herald migrate` instead).
    #[arg(long)]
    no_migrate: bool,
    /// Log format: text or json.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

/// A range (`10.0.0.0/8`) or a single address (`10.1.2.3` = `/32`).
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| {
        format!(
            "invalid range {text:?}: expected an address range like 10.0.0.0/8 or fd00::/8, or a single address like 127.0.0.1"
        )
    })
}

fn parse_retry_delay(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|_| format!("invalid duration {text:?} in --retry-schedule: expected e.g. 5s,5m,30m"))
}

/// Configured ranges that switch SSRF protection off entirely: they let
/// Herald call any address, the cloud metadata service and localhost
/// included.
fn ranges_disabling_ssrf_protection(config: &Config) -> Vec<IpNet> {
    config
        .security
        .allow_target_cidrs
        .iter()
        .filter(|net| net.prefix_len() == 0)
        .copied()
        .collect()
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "full" => Ok(Durability::Full),
        "process" => Ok(Durability::Process),
        _ => Err("expected `full` or `process`".into()),
    }
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).ok_or_else(|| "expected `api`, `worker` or `all`".into())
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected `text` or `json`".into()),
    }
}

impl ServeArgs {
    /// The effective configuration, validated.
    pub fn effective_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                Config::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        for cidr in &self.allow_target_cidrs {
            if !config.security.allow_target_cidrs.contains(cidr) {
                config.security.allow_target_cidrs.push(*cidr);
            }
        }
        if let Some(durability) = self.durability {
            config.storage.durability = durability;
        }
        if let Some(timeout) = self.delivery_timeout {
            config.delivery.timeout = timeout;
        }
        if let Some(schedule) = &self.retry_schedule {
            config.delivery.retry_schedule.clone_from(schedule);
        }
        if let Some(lease) = self.lease {
            config.delivery.lease = Some(lease);
        }
        if let Some(path) = &self.ca_file {
            config.delivery.ca_file = Some(path.clone());
        }
        if let Some(max) = self.max_in_flight {
            config.delivery.max_in_flight = max;
        }
        if let Some(max) = self.max_in_flight_per_endpoint {
            config.delivery.max_in_flight_per_endpoint = max;
        }
        if let Some(format) = self.log_format {
            config.log.format = format;
        }
        if let Some(url) = &self.database_url {
            config.storage.database_url = Some(url.clone());
        }
        if let Some(role) = self.role {
            config.node.role = role;
        }
        if let Some(name) = &self.node_name {
            config.node.name = Some(name.clone());
        }
        if self.no_migrate {
            config.storage.migrate_on_start = false;
        }
        config.master_keys = crate::master_key::from_environment()?;
        config.validate()?;
        Ok(config)
    }
}

/// `herald config`: prints the effective settings as TOML.
pub fn config(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = args.effective_config()?;
    // Show the lease in force even when it is derived from the timeout.
    config.delivery.lease = Some(config.lease());
    print!("{}", config.redacted().to_toml());
    Ok(ExitCode::SUCCESS)
}

/// `herald migrate`: applies pending migrations and exits.
pub async fn migrate(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.effective_config()?;
    crate::telemetry::init_tracing(&config.log);
    let applied = crate::store::migrate(&config.storage_config()).await?;
    println!("schema is at version {applied}");
    Ok(ExitCode::SUCCESS)
}

/// `herald serve`: runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.effective_config()?;
    crate::telemetry::init_tracing(&config.log);
    // The port first: if it is taken, fail before anything is created on disk.
    let listener = app::bind(config.listen)?;
    for range in ranges_disabling_ssrf_protection(&config) {
        tracing::warn!(
            %range,
            "SSRF PROTECTION IS OFF: allow_target_cidrs includes {range}, so webhooks may make Herald call any address, \
             including localhost, private networks and cloud metadata services; allow only the ranges you need"
        );
    }
    let from_env = std::env::var("HERALD_ADMIN_KEY").ok();
    // On SQLite the key lives in the data directory; on PostgreSQL its hash
    // lives in the database, so every node accepts it (`app` reads it).
    let admin_key = match (&config.storage.database_url, from_env) {
        (Some(_), None) => None,
        (Some(_), Some(key)) => {
            tracing::info!("admin key: HERALD_ADMIN_KEY (overrides the one stored in the database)");
            Some(admin_key::from_environment(key)?)
        }
        (None, from_env) => {
            let admin_key = admin_key::load_or_create(&config.data_dir, from_env)?;
            if let AdminKey::Generated { key, path } = &admin_key {
                eprintln!(
                    "Generated the admin key (shown only now; also saved to {}):\n\n    {key}\n",
                    path.display()
                );
            }
            match &admin_key {
                AdminKey::FromEnvironment {
                    removed_stale_file: Some(_),
                    ..
                } => tracing::warn!("{}", admin_key.describe()),
                _ => tracing::info!("{}", admin_key.describe()),
            }
            Some(admin_key.key().to_owned())
        }
    };
    // Handlers first: a SIGTERM arriving right after start-up must already
    // mean "shut down gracefully", not the default "die".
    let mut signals = ShutdownSignals::install()?;
    let running = app::start_on(listener, &config, admin_key.as_deref(), Dependencies::default()).await?;
    // Scripts and tests read this line to learn the port when listening on :0.
    println!("herald listening on http://{}", running.addr);
    let token = running.shutdown_token();
    tokio::select! {
        () = signals.received() => tracing::info!("shutting down: finishing in-flight deliveries"),
        () = token.cancelled() => {}
    }
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM and SIGINT, registered when made.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn received(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_is_a_single_address_range() {
        assert_eq!(parse_cidr("127.0.0.1"), Ok("127.0.0.1/32".parse().unwrap()));
        assert_eq!(parse_cidr("::1"), Ok("::1/128".parse().unwrap()));
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok("10.0.0.0/8".parse().unwrap()));
        let error = parse_cidr("localhost").unwrap_err();
        assert!(error.contains("expected an address range like 10.0.0.0/8"), "{error}");
    }

    #[test]
    fn a_bad_retry_delay_says_what_was_expected() {
        assert_eq!(parse_retry_delay("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(
            parse_retry_delay("bogus").unwrap_err(),
            r#"invalid duration "bogus" in --retry-schedule: expected e.g. 5s,5m,30m"#
        );
    }

    #[test]
    fn ranges_that_contain_everything_are_found() {
        let mut config = Config::default();
        config.security.allow_target_cidrs = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(ranges_disabling_ssrf_protection(&config).is_empty());
        config.security.allow_target_cidrs.push("0.0.0.0/0".parse().unwrap());
        config.security.allow_target_cidrs.push("::/0".parse().unwrap());
        assert_eq!(ranges_disabling_ssrf_protection(&config).len(), 2);
    }
}
