//! Which storage backend this test binary runs on, and a fresh PostgreSQL
//! database per test.
//!
//! The same test code is compiled twice (see `Cargo.toml`): the `server`
//! binary runs every test on SQLite, `server_postgres` on PostgreSQL. On
//! PostgreSQL each test gets its own database (`tests/common/test_database.rs`),
//! so tests run in parallel without seeing each other.
//!
//! Without a reachable PostgreSQL, outside CI, a PostgreSQL test says so on
//! stderr and ends its process successfully (nextest runs one process per
//! test: this is a skip); the `postgres_availability` test prints the
//! reason where `cargo nextest run` shows it. Under `CI=true` it fails.

#[path = "../../common/test_database.rs"]
mod test_database;

pub use test_database::{TEST_MASTER_KEY, admin_url, test_keyring};

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

/// Why PostgreSQL cannot be used, if it cannot.
pub async fn unavailable() -> Option<String> {
    test_database::connect_admin().await.err()
}

/// Skips (outside CI) or fails (under CI) when PostgreSQL is unreachable.
pub async fn require_postgres() {
    let Some(reason) = unavailable().await else { return };
    if test_database::in_ci() {
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
    let client = test_database::connect_admin().await.expect("connect to PostgreSQL");
    test_database::create(&client).await.0
}
