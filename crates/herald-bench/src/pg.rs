//! The PostgreSQL side of the benchmark: one admin connection (to the
//! `--database-url` database) that creates a fresh `herald_bench_<random>`
//! database per scenario and drops it afterwards, and cheap probes of what
//! the server did meanwhile (write transactions, WAL bytes, commits, what
//! its backends were waiting on).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_postgres::{Client, NoTls};

pub struct Admin {
    /// Reconnected when the server closed it (e.g. restarted meanwhile).
    client: tokio::sync::Mutex<Client>,
    url: String,
    /// Databases created and not dropped yet (dropped at the end whatever happens).
    created: Mutex<Vec<String>>,
}

impl Admin {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: tokio::sync::Mutex::new(open(url).await?),
            url: url.to_owned(),
            created: Mutex::new(Vec::new()),
        })
    }

    /// The admin connection, reopened if the server closed it.
    async fn client(&self) -> anyhow::Result<tokio::sync::MutexGuard<'_, Client>> {
        let mut client = self.client.lock().await;
        if client.is_closed() {
            eprintln!("the admin connection to PostgreSQL was closed; reconnecting");
            *client = open(&self.url).await?;
        }
        Ok(client)
    }

    /// `CREATE DATABASE herald_bench_<random>`; returns its name and a URL
    /// for Herald (the admin URL with the database replaced).
    pub async fn create_database(&self) -> anyhow::Result<(String, String)> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "herald_bench_{:x}{:04x}",
            nanos & 0xffff_ffff_ffff,
            std::process::id() & 0xffff
        );
        self.client()
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        self.created
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .push(name.clone());
        Ok((name.clone(), with_database(&self.url, &name)?))
    }

    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .with_context(|| format!("DROP DATABASE {name}"))?;
        self.created
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .retain(|n| n != name);
        Ok(())
    }

    /// Drops every database this run created and has not dropped yet.
    pub async fn drop_all(&self) {
        let names: Vec<String> = self.created.lock().map(|names| names.clone()).unwrap_or_default();
        for name in names {
            if let Err(error) = self.drop_database(&name).await {
                eprintln!("could not drop {name}: {error:#}");
            }
        }
    }

    /// Cluster-wide counters: (next transaction id, WAL position in bytes).
    /// Reading them assigns no transaction id.
    pub async fn counters(&self) -> anyhow::Result<(i64, i64)> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8,
                        (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// (commits, rollbacks) of `database` so far (read-only transactions included).
    pub async fn commits(&self, database: &str) -> anyhow::Result<(i64, i64)> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1",
                &[&database],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

/// Samples `pg_stat_activity` for one database every few milliseconds:
/// how many of its backends were, on average, in each state and wait
/// event (a poor man's wait-event profile).
pub struct WaitSampler {
    samples: Arc<Mutex<(u64, HashMap<String, u64>)>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl WaitSampler {
    pub async fn start(admin_url: &str, database: &str) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(admin_url, NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let samples = Arc::new(Mutex::new((0u64, HashMap::new())));
        let stop = Arc::new(AtomicBool::new(false));
        let (shared, stopping, database) = (Arc::clone(&samples), Arc::clone(&stop), database.to_owned());
        let task = tokio::spawn(async move {
            let Ok(statement) = client
                .prepare(
                    "SELECT CASE WHEN state = 'active' THEN '' ELSE state || ' ' END
                            || COALESCE(wait_event_type || '/' || wait_event, 'on CPU'), COUNT(*)
                     FROM pg_stat_activity
                     WHERE datname = $1 AND state IS NOT NULL AND state <> 'idle' AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'
                     GROUP BY 1",
                )
                .await
            else {
                return;
            };
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            while !stopping.load(Ordering::Relaxed) {
                ticker.tick().await;
                let Ok(rows) = client.query(&statement, &[&database]).await else {
                    continue;
                };
                if let Ok(mut samples) = shared.lock() {
                    samples.0 += 1;
                    for row in rows {
                        let (what, count): (String, i64) = (row.get(0), row.get(1));
                        *samples.1.entry(what).or_default() += count.unsigned_abs();
                    }
                }
            }
        });
        Ok(Self { samples, stop, task })
    }

    /// The states seen since the last call, busiest first, as
    /// "avg backends per sample" (and resets the tally).
    pub fn take(&self) -> String {
        let Ok(mut samples) = self.samples.lock() else {
            return String::new();
        };
        let (count, tally) = std::mem::take(&mut *samples);
        if count == 0 {
            return "no samples".to_owned();
        }
        let mut tally: Vec<(String, u64)> = tally.into_iter().collect();
        tally.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let busy: f64 = tally.iter().map(|(_, n)| *n as f64).sum::<f64>() / count as f64;
        let top: Vec<String> = tally
            .iter()
            .take(5)
            .map(|(what, n)| format!("{what} {:.2}", *n as f64 / count as f64))
            .collect();
        format!("busy backends {busy:.2} avg over {count} samples: {}", top.join(", "))
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

async fn open(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {} (the admin connection)", redact(url)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("admin connection to PostgreSQL ended: {error}");
        }
    });
    Ok(client)
}

/// `url` with its database (the path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!("--database-url must be a postgres:// URL, not {}", redact(url));
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query
        .split_once('/')
        .map_or(before_query, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:****@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        None => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://h:5432", "x").unwrap(),
            "postgresql://h:5432/x"
        );
        assert!(with_database("host=h dbname=y", "x").is_err());
    }
}
