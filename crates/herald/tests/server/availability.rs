//! Says, where `cargo nextest run` shows it (see `.config/nextest.toml`),
//! which backend this binary tests and, for PostgreSQL, whether it could.

use crate::support::backend::{Backend, admin_url, backend, unavailable};

#[tokio::test]
async fn postgres_availability() {
    match backend() {
        Backend::Sqlite => eprintln!("server tests: running on SQLite"),
        Backend::Postgres => match unavailable().await {
            None => eprintln!("server_postgres tests: running on PostgreSQL at {}", admin_url()),
            Some(reason) => {
                assert!(
                    !std::env::var("CI").is_ok_and(|ci| ci == "true"),
                    "CI=true and PostgreSQL at {} is unreachable: {reason}",
                    admin_url()
                );
                eprintln!(
                    "server_postgres tests: SKIPPED, PostgreSQL at {} is unreachable ({reason}). \
                     Start it (pg_ctlcluster … main start) or set HERALD_TEST_DATABASE_URL.",
                    admin_url()
                );
            }
        },
    }
}
