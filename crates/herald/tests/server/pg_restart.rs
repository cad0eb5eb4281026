//! A PostgreSQL restart under load (`server_postgres` only).
//!
//! One `herald serve` on a fresh database takes a stream of publishes while
//! the PostgreSQL server is restarted (`pg_ctlcluster … restart --mode
//! fast`). During the outage publishes must be refused with 503 (never a
//! 202 for something not committed) and `/readyz` must say 503; afterwards
//! the node must reconnect by itself, turn ready, accept publishes again,
//! and deliver every event it acknowledged.
//!
//! The restart disturbs every other test using that server: run this test
//! alone (nextest: `threads-required = "num-test-threads"` for
//! `binary(server_postgres) & test(/^pg_restart::/)`). It restarts only a
//! local cluster managed by `pg_ctlcluster` and skips otherwise.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::multinode::{
    CountingReceiver, fast_node_config, herald_command, project_key_and_webhook, start, wait_ready,
};
use crate::support::backend::{Backend, admin_url, backend, fresh_database};

const RESTART: &str = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart --mode fast";
const PUBLISHERS: usize = 4;

/// What one publish got.
#[derive(Debug, Clone)]
struct Outcome {
    sent: Instant,
    answered: Instant,
    /// The HTTP status, or `None` for no answer (a transport error).
    status: Option<u16>,
    retry_after: Option<String>,
    /// The accepted event's id (202), or the error code (others).
    id_or_code: String,
    /// Unique per publish, inside the event's data.
    marker: String,
}

/// Why this machine cannot restart the test server, if it cannot.
fn cannot_restart() -> Option<String> {
    let url = url::Url::parse(&admin_url()).ok()?;
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "::1" | "[::1]")) {
        return Some(format!(
            "the test server {} is not local",
            url.host_str().unwrap_or("?")
        ));
    }
    let versions = std::fs::read_dir("/etc/postgresql").map(|d| d.count()).unwrap_or(0);
    if versions != 1 {
        return Some(format!(
            "/etc/postgresql holds {versions} versions, expected exactly one"
        ));
    }
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg("command -v pg_ctlcluster")
        .output()
        .is_ok_and(|o| o.status.success());
    (!found).then(|| "pg_ctlcluster is not installed".to_owned())
}

async fn publish_stream(
    http: reqwest::Client,
    base: String,
    key: String,
    publisher: usize,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
) {
    let deadline = Instant::now() + Duration::from_secs(75);
    for n in 0.. {
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return;
        }
        let marker = format!("m-{publisher}-{n}");
        let body = json!({ "type": "restart.test", "data": { "marker": marker } });
        let sent = Instant::now();
        let response = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await;
        let outcome = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("?").to_owned());
                let body: Value = response.json().await.unwrap_or(Value::Null);
                let id_or_code = if status == 202 {
                    body["id"].as_str().expect("a 202 names the event").to_owned()
                } else {
                    body["error"]["code"].as_str().unwrap_or("?").to_owned()
                };
                Outcome {
                    sent,
                    answered: Instant::now(),
                    status: Some(status),
                    retry_after,
                    id_or_code,
                    marker,
                }
            }
            Err(error) => Outcome {
                sent,
                answered: Instant::now(),
                status: None,
                retry_after: None,
                id_or_code: error.to_string(),
                marker,
            },
        };
        outcomes.lock().unwrap().push(outcome);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `/readyz` every 20 ms until `stop`: (when answered, status or 0).
async fn poll_readiness(
    http: reqwest::Client,
    base: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u16)>>>,
) {
    let deadline = Instant::now() + Duration::from_secs(75);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let status = match http.get(format!("{base}/readyz")).send().await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        seen.lock().unwrap().push((Instant::now(), status));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pg_restart_refuses_with_503_then_recovers_and_delivers_everything() {
    if backend() == Backend::Sqlite {
        eprintln!("pg_restart: PostgreSQL-only (restarts the database server); nothing to test on SQLite");
        return;
    }
    let database_url = fresh_database().await;
    if let Some(reason) = cannot_restart() {
        eprintln!("SKIPPED pg_restart: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = fast_node_config(dir.path());
    let receiver = CountingReceiver::start(Duration::from_millis(2)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut command = herald_command(dir.path());
    command
        .arg("--config")
        .arg(&config)
        .env("HERALD_DATABASE_URL", &database_url)
        .env("HERALD_MASTER_KEY", crate::support::backend::TEST_MASTER_KEY)
        .env("HERALD_NODE_NAME", "restart-test");
    let mut server = tokio::task::block_in_place(|| start(command));
    wait_ready(&http, &server.base, Duration::from_secs(10)).await;
    // One project and webhook per publisher: concurrent publishes to one
    // webhook deadlock in PostgreSQL (answered 503), which would blur the
    // outage's 503s (see multinode.rs).
    let mut keys = Vec::new();
    for n in 0..PUBLISHERS {
        keys.push(project_key_and_webhook(&http, &server.base, &format!("restart-{n}"), &receiver.url(n)).await);
    }

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let readiness: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<_> = (0..PUBLISHERS)
        .map(|publisher| {
            tokio::spawn(publish_stream(
                http.clone(),
                server.base.clone(),
                keys[publisher].clone(),
                publisher,
                Arc::clone(&stop),
                Arc::clone(&outcomes),
            ))
        })
        .collect();
    tasks.push(tokio::spawn(poll_readiness(
        http.clone(),
        server.base.clone(),
        Arc::clone(&stop),
        Arc::clone(&readiness),
    )));
    let accepted = |outcomes: &Mutex<Vec<Outcome>>| {
        outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.status == Some(202))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted(&outcomes) < 150 || receiver.count() < 50 {
        assert!(Instant::now() < deadline, "the stream did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The restart, in the middle of the stream.
    let restart_started = Instant::now();
    let restart = tokio::task::spawn_blocking(|| std::process::Command::new("sh").arg("-c").arg(RESTART).output())
        .await
        .unwrap()
        .expect("sh runs");
    let restart_ended = Instant::now();
    assert!(
        restart.status.success(),
        "{RESTART}: {:?}\n{}{}",
        restart.status,
        String::from_utf8_lossy(&restart.stdout),
        String::from_utf8_lossy(&restart.stderr)
    );

    // Recovery, by itself: ready again and a publish sent after the restart
    // accepted.
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        let ready_again = readiness
            .lock()
            .unwrap()
            .iter()
            .find(|(at, status)| *at > restart_ended && *status == 200)
            .map(|(at, _)| *at);
        let accepting_again = outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.sent > restart_ended && o.status == Some(202))
            .map(|o| o.answered)
            .min();
        if let (Some(ready), Some(accepting)) = (ready_again, accepting_again) {
            break Some((ready, accepting));
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A second's more publishing on the recovered connection.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }

    let outcomes = outcomes.lock().unwrap().clone();
    let readiness = readiness.lock().unwrap().clone();
    let acknowledged: HashSet<String> = outcomes
        .iter()
        .filter(|o| o.status == Some(202))
        .map(|o| o.id_or_code.clone())
        .collect();
    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.status != Some(202)).collect();
    let unavailable: Vec<&Outcome> = refused.iter().copied().filter(|o| o.status == Some(503)).collect();
    let with_retry_after = unavailable.iter().filter(|o| o.retry_after.is_some()).count();
    let other_refusals: Vec<String> = refused
        .iter()
        .filter(|o| o.status != Some(503))
        .map(|o| format!("{:?} {}", o.status, o.id_or_code))
        .collect();
    let accepted_during_restart = outcomes
        .iter()
        .filter(|o| o.status == Some(202) && o.answered > restart_started && o.sent < restart_ended)
        .count();
    let not_ready: Vec<Instant> = readiness
        .iter()
        .filter(|(at, status)| *at > restart_started && *status != 200)
        .map(|(at, _)| *at)
        .collect();
    let not_ready_statuses: HashSet<u16> = readiness
        .iter()
        .filter(|(at, status)| *at > restart_started && *status != 200)
        .map(|(_, status)| *status)
        .collect();
    let since = |at: Instant| at.saturating_duration_since(restart_started);

    // What the database holds: every 202 must be there (committed), and
    // some 503s may be too (the commit happened, its answer was lost).
    let (client, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database after the restart");
    tokio::spawn(connection);
    let rows = client
        .query("SELECT id, convert_from(payload, 'UTF8') FROM events", &[])
        .await
        .expect("read the events");
    let stored_ids: HashSet<String> = rows.iter().map(|row| row.get::<_, String>(0)).collect();
    let stored_markers: HashSet<String> = rows
        .iter()
        .filter_map(|row| {
            let payload: Value = serde_json::from_str(&row.get::<_, String>(1)).ok()?;
            payload["data"]["marker"].as_str().map(str::to_owned)
        })
        .collect();
    let acknowledged_not_stored = acknowledged.iter().filter(|id| !stored_ids.contains(*id)).count();
    let refused_but_stored = refused.iter().filter(|o| stored_markers.contains(&o.marker)).count();

    let missing = receiver.wait_for_all(&acknowledged, Duration::from_secs(60)).await;
    let duplicates = receiver.duplicates();
    eprintln!(
        "pg_restart: restart took {:?}; {} publishes: {} accepted ({accepted_during_restart} answered 202 while the \
         restart ran), {} refused with 503 (first {:?}, last {:?} after the restart began; Retry-After on \
         {with_retry_after} of them: {:?}), other refusals {:?}; 503s whose event was committed anyway: \
         {refused_but_stored}; /readyz not ready {} times (statuses {not_ready_statuses:?}) from {:?} to {:?}, ready \
         again {:?} and accepting again {:?} after the restart began; 202s missing from the database: \
         {acknowledged_not_stored}; delivered: {} requests, {missing} acknowledged events missing, {duplicates} \
         duplicates",
        restart_ended - restart_started,
        outcomes.len(),
        acknowledged.len(),
        unavailable.len(),
        unavailable.iter().map(|o| since(o.answered)).min(),
        unavailable.iter().map(|o| since(o.answered)).max(),
        unavailable.first().and_then(|o| o.retry_after.clone()),
        other_refusals.iter().take(5).collect::<Vec<_>>(),
        not_ready.len(),
        not_ready.first().map(|at| since(*at)),
        not_ready.last().map(|at| since(*at)),
        recovered.map(|(ready, _)| since(ready)),
        recovered.map(|(_, accepting)| since(accepting)),
        receiver.count(),
    );
    server.kill();

    assert!(
        recovered.is_some(),
        "herald did not become ready and accept publishes within 30 s of the restart"
    );
    assert_eq!(
        acknowledged_not_stored, 0,
        "202 answered for events the database does not hold"
    );
    assert_eq!(missing, 0, "acknowledged events were never delivered");
    assert!(!unavailable.is_empty(), "no publish was refused during the restart");
    assert!(
        other_refusals.is_empty(),
        "publishes during the outage must get 503, not {other_refusals:?}"
    );
    assert!(
        unavailable.iter().all(|o| o.id_or_code == "unavailable"),
        "503s say `unavailable`"
    );
    assert!(!not_ready.is_empty(), "/readyz never said not-ready during the restart");
    assert_eq!(
        not_ready_statuses,
        HashSet::from([503]),
        "/readyz answers 503 while the database is away"
    );
    let (ready_again, _) = recovered.unwrap();
    assert!(
        not_ready.iter().all(|at| *at < ready_again),
        "/readyz flapped after recovering"
    );
}
