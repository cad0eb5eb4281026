//! `TestApp`: a real Herald on 127.0.0.1:0 with its own data directory, a
//! manual clock, no jitter and a dispatcher that tests step by hand.

pub mod backend;
pub mod python;
pub mod receiver;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use herald::app::{self, Dependencies, RunningApp};
use herald::clock::ManualClock;
use herald::config::Config;
use herald::delivery::FixedJitter;
use herald::domain::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub use receiver::{Receiver, Reply};

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// 2026-01-01T00:00:00Z
pub const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);

pub struct TestApp {
    pub running: Option<RunningApp>,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub base: String,
    pub http: reqwest::Client,
    pub data_dir: Arc<tempfile::TempDir>,
}

/// The configuration tests start from: loopback allowed, port 0, quiet logs.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.security.allow_target_cidrs = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    config.delivery.timeout = Duration::from_secs(5);
    config.delivery.lease = Some(Duration::from_secs(30));
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut config = test_config(data_dir.path());
        adjust(&mut config);
        Self::start(config, data_dir, Arc::new(ManualClock::new(START)), false).await
    }

    /// Starts on this binary's backend: on PostgreSQL, a fresh database
    /// unless `config` names one already (a restart keeps its database).
    pub async fn start(
        mut config: Config,
        data_dir: Arc<tempfile::TempDir>,
        clock: Arc<ManualClock>,
        run_dispatcher: bool,
    ) -> Self {
        if backend::backend() == backend::Backend::Postgres && config.storage.database_url.is_none() {
            config.storage.database_url = Some(backend::fresh_database().await);
            config.storage.pool_size = 6;
        }
        if config.storage.database_url.is_some() && config.master_keys.is_none() {
            config.master_keys = Some(backend::test_keyring());
        }
        let deps = Dependencies {
            clock: clock.clone(),
            jitter: Arc::new(FixedJitter(0.0)),
            run_dispatcher,
        };
        let running = app::start(&config, Some(ADMIN_KEY), deps).await.expect("herald starts");
        let base = format!("http://{}", running.addr);
        Self {
            running: Some(running),
            clock,
            config,
            base,
            http: reqwest::Client::new(),
            data_dir,
        }
    }

    /// Stops this instance and starts a new one on the same data directory.
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.running
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        let mut config = self.config.clone();
        adjust(&mut config);
        Self::start(config, Arc::clone(&self.data_dir), Arc::clone(&self.clock), false).await
    }

    /// Stops this instance, runs `sql` on its database directly (to stage
    /// states only a crash produces; the same SQL on either backend), and
    /// starts a new instance.
    pub async fn restart_with_sql(mut self, sql: &str) -> Self {
        self.running
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        match &self.config.storage.database_url {
            Some(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test database");
                tokio::spawn(connection);
                client.batch_execute(sql).await.expect("staging SQL runs");
            }
            None => {
                let conn =
                    rusqlite::Connection::open(self.data_dir.path().join("herald.db")).expect("open the database");
                conn.execute_batch(sql).expect("staging SQL runs");
            }
        }
        Self::start(
            self.config.clone(),
            Arc::clone(&self.data_dir),
            Arc::clone(&self.clock),
            false,
        )
        .await
    }

    /// Runs a `SELECT COUNT(*) …` directly on the database (either backend).
    pub async fn query_count(&self, sql: &str) -> i64 {
        match &self.config.storage.database_url {
            Some(url) => {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test database");
                tokio::spawn(connection);
                client.query_one(sql, &[]).await.expect("the query runs").get(0)
            }
            None => {
                let conn =
                    rusqlite::Connection::open(self.data_dir.path().join("herald.db")).expect("open the database");
                conn.query_row(sql, [], |row| row.get(0)).expect("the query runs")
            }
        }
    }

    pub fn running(&self) -> &RunningApp {
        self.running.as_ref().expect("running")
    }

    /// Sends a request; `key` is the bearer token, `body` JSON if given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// Sends raw bytes with a content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A new project and one of its API keys.
    pub async fn project(&self, name: &str) -> Project {
        let (status, project) = self
            .call(
                Method::POST,
                "/v1/projects",
                Some(ADMIN_KEY),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{project}");
        let id = project["id"].as_str().unwrap().to_owned();
        let (status, key) = self
            .call(
                Method::POST,
                &format!("/v1/projects/{id}/api_keys"),
                Some(ADMIN_KEY),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        Project {
            id,
            key: key["key"].as_str().unwrap().to_owned(),
        }
    }

    /// Registers a webhook; returns its JSON (with `new_signing_secret`).
    pub async fn webhook(&self, project: &Project, uri: &str, events: &[&str]) -> Value {
        let body = json!({ "uri": uri, "subscribed_events": events });
        let (status, webhook) = self
            .call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{webhook}");
        webhook
    }

    /// Publishes one event; returns its id.
    pub async fn publish(&self, project: &Project, event_type: &str, data: Value) -> String {
        let body = json!({ "type": event_type, "data": data });
        let (status, accepted) = self
            .call(Method::POST, "/v1/events", Some(&project.key), Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        accepted["id"].as_str().unwrap().to_owned()
    }

    pub async fn event(&self, project: &Project, id: &str) -> Value {
        let (status, event) = self
            .call(Method::GET, &format!("/v1/events/{id}"), Some(&project.key), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{event}");
        event
    }

    /// Runs the dispatcher until nothing is due at the current (manual) time.
    pub async fn deliver_due(&self) -> usize {
        let mut total = 0;
        loop {
            let made = self.running().dispatcher.run_once().await.expect("dispatcher step");
            if made == 0 {
                return total;
            }
            total += made;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        response.text().await.expect("metrics text")
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The manual clock's instant.
    pub fn clock_now(&self) -> herald::domain::Timestamp {
        herald::clock::Clock::now(self.clock.as_ref())
    }
}

/// POSTs JSON to a Herald process (not a `TestApp`), asserts a 2xx and
/// returns the JSON answer (process-level tests: crash, multinode).
pub async fn post_json(http: &reqwest::Client, base: &str, path: &str, key: &str, body: Value) -> Value {
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).expect("json")
}

pub struct Project {
    pub id: String,
    pub key: String,
}
