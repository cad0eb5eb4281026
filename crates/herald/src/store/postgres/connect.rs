//! Connecting to PostgreSQL: parsing and redacting URLs, the pool, and
//! telling a server that is not there yet (retry) from a configuration
//! that can never work (fail at once, in one line).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::store::{StoreError, StoreResult};

/// How long to wait for a connection (new or from the pool) before a
/// request fails with 503 instead of hanging while the server is away.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks that `url` is a PostgreSQL connection string this build can use.
pub fn check_url(url: &str) -> Result<(), String> {
    parse(url).map(drop)
}

pub(super) fn parse(url: &str) -> Result<tokio_postgres::Config, String> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("not a PostgreSQL connection string ({e}): {}", redact_url(url)))?;
    if config.get_hosts().is_empty() {
        return Err(format!("names no host: {}", redact_url(url)));
    }
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(format!(
            "sslmode=require is not supported by this build (connect over a private network or a TLS-terminating proxy): {}",
            redact_url(url)
        ));
    }
    Ok(config)
}

/// The URL with its password, if any, replaced by `****` (for messages
/// and `herald config`).
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url)
        && matches!(parsed.scheme(), "postgres" | "postgresql")
    {
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("****"));
        }
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "****".into() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        if !pairs.is_empty() {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        return parsed.to_string();
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        // A URL too broken to parse: hide whatever follows `user:` in its
        // user-info part.
        if let Some((userinfo, host)) = rest.split_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:****@{host}");
        }
        return url.to_owned();
    }
    // key=value form: hide the value after `password=`.
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=****"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The pool every query of this node goes through. Sessions commit with
/// `synchronous_commit = on` whatever the server's default: an
/// acknowledged write must be durable.
/// `durable: false` makes a pool whose sessions commit asynchronously, for
/// what is not data (scheduling hints; see `hints`).
pub(super) fn pool(
    mut config: tokio_postgres::Config,
    size: usize,
    node_name: &str,
    durable: bool,
) -> StoreResult<Pool> {
    let synchronous = if durable { "on" } else { "off" };
    config
        .application_name(format!("herald {node_name}"))
        .options(format!(
            "-c synchronous_commit={synchronous} -c idle_in_transaction_session_timeout=60000"
        ))
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot build the connection pool: {e}")))
}

/// Whether a failure to connect can never succeed by waiting: a wrong
/// password, an unknown user or database, a refused TLS set-up.
pub(super) fn is_permanent(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => {
            code.code().starts_with("28")
                || *code == SqlState::INVALID_CATALOG_NAME
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        }
        None => false,
    }
}

/// A driver error as a store error. Database errors keep their message
/// (never the query's parameters, which may hold secrets).
pub(super) fn store_error(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("PostgreSQL: {} ({})", db.message(), db.code().code())),
        None => StoreError::Unavailable(format!("PostgreSQL: {error}")),
    }
}

pub(super) fn pool_error(error: deadpool_postgres::PoolError) -> StoreError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => store_error(error),
        deadpool_postgres::PoolError::Timeout(_) => {
            StoreError::Unavailable("PostgreSQL: no connection within 5s (is the server up?)".into())
        }
        other => StoreError::Unavailable(format!("PostgreSQL: {other}")),
    }
}

/// Whether a transaction failed only because it lost a race (deadlock,
/// serialization): running it again will do.
pub(super) fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("postgres://herald:s3cret@db:5432/herald"),
            "postgres://herald:****@db:5432/herald"
        );
        assert_eq!(
            redact_url("postgres://db/herald?password=s3cret&sslmode=disable"),
            "postgres://db/herald?password=****&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db password=s3cret user=x"),
            "host=db password=**** user=x"
        );
        assert_eq!(redact_url("postgres://db/herald"), "postgres://db/herald");
    }

    #[test]
    fn malformed_urls_are_refused_without_the_password() {
        let error = check_url("postgres://u:pw@db:notaport/x").unwrap_err();
        assert!(!error.contains("pw@"), "{error}");
        assert!(check_url("postgres://127.0.0.1:5432/test").is_ok());
        assert!(check_url("mysql://db/x").is_err());
    }
}
