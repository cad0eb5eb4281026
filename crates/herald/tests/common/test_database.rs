//! A fresh PostgreSQL database per test, shared by the test binaries that
//! run on PostgreSQL (`server_postgres`, `store_contract`); each decides
//! what an unreachable server means for it (skip outside CI, fail under
//! `CI=true`).
//!
//! Databases are named `herald_t_<unixsecs>_<random>` on the server of
//! `HERALD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); ones more than an hour
//! old (earlier runs) are dropped whenever a new one is made.

use std::time::{SystemTime, UNIX_EPOCH};

/// The server that test databases are created on.
pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether `CI=true`: an unreachable PostgreSQL is then a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// A connection to the admin database, or why there is none.
pub async fn connect_admin() -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map_err(|e| e.to_string())?;
    Ok(client)
}

/// Creates an empty database; returns its URL and name.
pub async fn create(client: &tokio_postgres::Client) -> (String, String) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    drop_stale(client, now).await;
    let name = format!("herald_t_{now}_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(&admin_url()).expect("HERALD_TEST_DATABASE_URL must be a postgres:// URL");
    url.set_path(&format!("/{name}"));
    (url.to_string(), name)
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

/// The master key every PostgreSQL test node is given (`HERALD_MASTER_KEY`):
/// a shared database needs the same key on every node.
#[allow(dead_code)]
pub const TEST_MASTER_KEY: &str = "aGVyYWxkLXRlc3QtbWFzdGVyLWtleS0zMi1ieXRlcyE=";

/// [`TEST_MASTER_KEY`] as a keyring.
#[allow(dead_code)]
pub fn test_keyring() -> herald::domain::secret::Keyring {
    herald::domain::secret::Keyring::new(
        herald::domain::secret::MasterKey::parse(TEST_MASTER_KEY).expect("the test master key is valid"),
        Vec::new(),
    )
}
