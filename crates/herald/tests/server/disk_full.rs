//! A full disk: publishes get 503 (nothing acknowledged that did not
//! commit), `/readyz` says not-ready while the store cannot commit, and both
//! recover by themselves once there is room again.
//!
//! The disk is a small tmpfs mounted for the test (this needs root, which
//! the development machines and CI have; elsewhere the test says it cannot
//! run and passes). SQLite only: the PostgreSQL server's disk is not ours
//! to fill.

use std::process::Command;
use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::support::backend::{Backend, backend};
use crate::support::{START, TestApp, test_config};

struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?
            .success();
        mounted.then_some(Self { dir })
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "remount the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_publishes_503_and_readiness_fail_until_there_is_room() {
    if backend() == Backend::Postgres {
        eprintln!("SQLite-only: the PostgreSQL server's disk is not the test's to fill");
        return;
    }
    let Some(disk) = Tmpfs::mount("3m") else {
        eprintln!("cannot mount a tmpfs (not root?): the full-disk test cannot run here");
        return;
    };
    let data_dir = Arc::new(tempfile::TempDir::new_in(disk.dir.path()).unwrap());
    let mut config = test_config(data_dir.path());
    config.limits.max_fanout_per_request = 100_000;
    let app = TestApp::start(
        config,
        data_dir,
        Arc::new(herald::clock::ManualClock::new(START)),
        false,
    )
    .await;
    let project = app.project("acme").await;
    app.webhook(&project, "http://127.0.0.1:9/", &["*"]).await;
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.0, 200);

    let padding = "x".repeat(60_000);
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..200 {
        let body = json!({ "type": "batch.succeeded", "data": { "padding": padding } });
        let (status, answer) = app
            .call(Method::POST, "/v1/events", Some(&project.key), Some(body))
            .await;
        match status.as_u16() {
            202 => accepted.push(answer["id"].as_str().unwrap().to_owned()),
            503 => {
                refused = Some(answer);
                break;
            }
            other => panic!("a publish on a filling disk answered {other}: {answer}"),
        }
    }
    let refused = refused.expect("the disk filled up");
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    let (status, ready) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 503, "not ready while nothing can commit: {ready}");

    disk.resize("64m");
    let (status, ready) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "ready again once there is room: {ready}");
    let recovered = app.publish(&project, "batch.succeeded", json!({})).await;
    for id in accepted.iter().chain(std::iter::once(&recovered)) {
        assert_eq!(
            app.event(&project, id).await["id"],
            id.as_str(),
            "every 202 was committed"
        );
    }
}
