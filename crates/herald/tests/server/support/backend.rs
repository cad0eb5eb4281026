//! Which storage backend this test binary runs on, and a fresh PostgreSQL
//! database per test.
//!
//! The same test code is compiled twice (see `Cargo.toml`): the `server`
//! binary runs every test on SQLite, `server_postgres` on PostgreSQL. On
//! PostgreSQL each test gets its own database (`herald_t_<time>_<random>`,
//! created from `HERALD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), so tests run in
//! parallel without seeing each other; databases left by runs more than an
//! hour old are dropped.
//!
//! Without a reachable PostgreSQL, outside CI, a PostgreSQL test says so on
//! stderr and ends its process successfully (nextest runs one process per
//! test: this is a skip); the `postgres_availability` test prints the
//! reason where `cargo nextest run` shows it. Under `CI=true` it fails.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    if env!("CARGO_CRATE_NAME").ends_with("postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// The server that test databases are created on.
pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Why PostgreSQL cannot be used, if it cannot.
pub async fn unavailable() -> Option<String> {
    match tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client.simple_query("SELECT 1").await.err().map(|e| e.to_string())
        }
        Err(error) => Some(error.to_string()),
    }
}

/// Skips (outside CI) or fails (under CI) when PostgreSQL is unreachable.
pub async fn require_postgres() {
    let Some(reason) = unavailable().await else { return };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("CI=true and PostgreSQL at {} is unreachable: {reason}", admin_url());
    }
    eprintln!(
        "SKIPPED: PostgreSQL at {} is unreachable ({reason}); start it or set HERALD_TEST_DATABASE_URL",
        admin_url()
    );
    std::process::exit(0);
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database() -> String {
    require_postgres().await;
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    drop_stale(&client, now).await;
    let name = format!("herald_t_{now}_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let mut config: tokio_postgres::Config = admin_url().parse().expect("a valid test URL");
    config.dbname(&name);
    url_of(&config, &name)
}

/// Drops test databases created more than an hour ago (earlier runs).
async fn drop_stale(client: &tokio_postgres::Client, now: u64) {
    let Ok(rows) = client
        .query("SELECT datname FROM pg_database WHERE datname LIKE 'herald_t_%'", &[])
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let created = name.split('_').nth(2).and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|created| created + 3600 < now) {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// The admin URL with its database swapped for `name`.
fn url_of(_config: &tokio_postgres::Config, name: &str) -> String {
    let admin = admin_url();
    let mut url = url::Url::parse(&admin).expect("HERALD_TEST_DATABASE_URL must be a postgres:// URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}
