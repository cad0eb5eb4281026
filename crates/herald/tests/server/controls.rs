//! Per-endpoint controls through the API and the delivery engine: set,
//! shown, patched and cleared; invalid values refused naming the field;
//! the rate limit measured per simulated second; `max_concurrency` in
//! flight; FIFO order under failures; a webhook's own retry schedule.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Project, Receiver, Reply, TestApp};

async fn create(app: &TestApp, project: &Project, body: Value) -> (reqwest::StatusCode, Value) {
    app.call(Method::POST, "/v1/webhooks", Some(&project.key), Some(body))
        .await
}

async fn controlled(app: &TestApp, project: &Project, uri: &str, controls: Value) -> String {
    let mut body = json!({ "uri": uri, "subscribed_events": ["*"] });
    for (key, value) in controls.as_object().unwrap() {
        body[key] = value.clone();
    }
    let (status, webhook) = create(app, project, body).await;
    assert_eq!(status, 201, "{webhook}");
    webhook["id"].as_str().unwrap().to_owned()
}

fn event_ids(received: &[crate::support::receiver::Received]) -> Vec<String> {
    received.iter().map(|r| r.json()["data"]["n"].to_string()).collect()
}

#[tokio::test]
async fn controls_are_set_shown_patched_and_cleared() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let (status, plain) = create(
        &app,
        &project,
        json!({ "uri": "http://127.0.0.1:9/a", "subscribed_events": ["*"] }),
    )
    .await;
    assert_eq!(status, 201, "{plain}");
    assert_eq!(plain["rate_limit_per_second"], Value::Null);
    assert_eq!(plain["max_concurrency"], Value::Null);
    assert_eq!(plain["ordering"], "none");
    assert_eq!(plain["retry_schedule"], Value::Null);

    let id = controlled(
        &app,
        &project,
        "http://127.0.0.1:9/b",
        json!({ "rate_limit_per_second": 5, "max_concurrency": 2, "ordering": "fifo", "retry_schedule": ["10s", "5m", "2h"] }),
    )
    .await;
    let path = format!("/v1/webhooks/{id}");
    let (status, shown) = app.call(Method::GET, &path, Some(&project.key), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["rate_limit_per_second"], 5);
    assert_eq!(shown["max_concurrency"], 2);
    assert_eq!(shown["ordering"], "fifo");
    assert_eq!(shown["retry_schedule"], json!(["10s", "5m", "2h"]));

    // null clears; absent fields stay.
    let (status, patched) = app
        .call(
            Method::PATCH,
            &path,
            Some(&project.key),
            Some(json!({ "rate_limit_per_second": null, "retry_schedule": null })),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["rate_limit_per_second"], Value::Null);
    assert_eq!(patched["retry_schedule"], Value::Null);
    assert_eq!(patched["max_concurrency"], 2);
    assert_eq!(patched["ordering"], "fifo");

    // update_mask names controls like any field.
    let (status, masked) = app
        .call(
            Method::PATCH,
            &format!("{path}?update_mask=ordering"),
            Some(&project.key),
            Some(json!({ "ordering": "none", "max_concurrency": 9 })),
        )
        .await;
    assert_eq!(status, 200, "{masked}");
    assert_eq!(masked["ordering"], "none");
    assert_eq!(masked["max_concurrency"], 2, "not in the mask");
}

#[tokio::test]
async fn invalid_controls_are_400_naming_the_field() {
    let app = TestApp::spawn_with(|config| config.delivery.max_age = Duration::from_secs(24 * 3600)).await;
    let project = app.project("acme").await;
    let id = controlled(&app, &project, "http://127.0.0.1:9/a", json!({})).await;
    let cases = [
        ("rate_limit_per_second", json!(0), "rate_limit_per_second"),
        ("rate_limit_per_second", json!(1001), "rate_limit_per_second"),
        ("rate_limit_per_second", json!("5"), "rate_limit_per_second"),
        ("rate_limit_per_second", json!(1.5), "rate_limit_per_second"),
        ("rate_limit_per_second", json!(-3), "rate_limit_per_second"),
        ("max_concurrency", json!(0), "max_concurrency"),
        ("max_concurrency", json!(u64::MAX), "max_concurrency"),
        ("ordering", json!("lifo"), "ordering"),
        ("ordering", json!(1), "ordering"),
        ("retry_schedule", json!("5s"), "retry_schedule"),
        ("retry_schedule", json!([]), "retry_schedule"),
        ("retry_schedule", json!(["5s", "soon"]), "retry_schedule[1]"),
        ("retry_schedule", json!([5]), "retry_schedule[0]"),
        ("retry_schedule", json!(["100ms"]), "retry_schedule"),
        // Past the server's 24 h window (delivery.max_age).
        ("retry_schedule", json!(["20h", "5h"]), "retry_schedule"),
    ];
    for (field, value, named) in cases {
        let mut body = json!({ "uri": "http://127.0.0.1:9/b", "subscribed_events": ["*"] });
        body[field] = value.clone();
        let (status, answer) = create(&app, &project, body).await;
        assert_eq!(status, 400, "create {field}={value}: {answer}");
        assert_eq!(answer["error"]["field"], named, "create {field}={value}: {answer}");
        let (status, answer) = app
            .call(
                Method::PATCH,
                &format!("/v1/webhooks/{id}"),
                Some(&project.key),
                Some(json!({ field: value })),
            )
            .await;
        assert_eq!(status, 400, "patch {field}={value}: {answer}");
        assert_eq!(answer["error"]["field"], named, "patch {field}={value}: {answer}");
    }
    let (_, unchanged) = app
        .call(Method::GET, &format!("/v1/webhooks/{id}"), Some(&project.key), None)
        .await;
    assert_eq!(unchanged["ordering"], "none", "nothing was changed by refused patches");
}

#[tokio::test]
async fn a_rate_limited_webhook_sends_five_per_simulated_second_beside_a_free_one() {
    let app = TestApp::spawn().await;
    let limited = Receiver::start().await;
    limited.always(Reply::status(204));
    let free = Receiver::start().await;
    free.always(Reply::status(204));
    let project = app.project("acme").await;
    controlled(
        &app,
        &project,
        &limited.url("/limited"),
        json!({ "rate_limit_per_second": 5 }),
    )
    .await;
    controlled(&app, &project, &free.url("/free"), json!({})).await;
    for n in 0..20 {
        app.publish(&project, "order.created", json!({ "n": n })).await;
    }
    // Step the manual clock by 100 ms for 4 s, delivering what is due.
    let mut per_second = [0usize; 4];
    let mut seen = 0;
    for step in 0..40 {
        app.deliver_due().await;
        if step == 0 {
            assert_eq!(free.count(), 20, "the free webhook is not held back");
        }
        let now = limited.count();
        per_second[step / 10] += now - seen;
        seen = now;
        app.advance(Duration::from_millis(100));
    }
    assert_eq!(per_second, [5, 5, 5, 5]);
}

#[tokio::test]
async fn max_concurrency_bounds_what_one_dispatcher_step_sends() {
    let app = TestApp::spawn().await;
    let slow = Receiver::start().await;
    slow.always(Reply::status(204).after(Duration::from_millis(50)));
    let project = app.project("acme").await;
    controlled(&app, &project, &slow.url("/slow"), json!({ "max_concurrency": 2 })).await;
    for n in 0..6 {
        app.publish(&project, "order.created", json!({ "n": n })).await;
    }
    let dispatcher = &app.running().dispatcher;
    for _ in 0..3 {
        assert_eq!(dispatcher.run_once().await.unwrap(), 2, "never more than two in flight");
    }
    assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    assert_eq!(slow.count(), 6);
}

#[tokio::test]
async fn fifo_waits_for_a_failing_first_until_it_is_exhausted_on_its_own_schedule() {
    let app = TestApp::spawn().await;
    let ordered = Receiver::start().await;
    ordered.script([Reply::status(500), Reply::status(500)]);
    ordered.always(Reply::status(204));
    let other = Receiver::start().await;
    other.always(Reply::status(204));
    let project = app.project("acme").await;
    controlled(
        &app,
        &project,
        &ordered.url("/fifo"),
        json!({ "ordering": "fifo", "retry_schedule": ["10s"] }),
    )
    .await;
    controlled(&app, &project, &other.url("/other"), json!({})).await;
    for n in 0..3 {
        app.publish(&project, "order.created", json!({ "n": n })).await;
        app.advance(Duration::from_millis(1));
    }

    app.deliver_due().await;
    assert_eq!(
        event_ids(&ordered.received()),
        ["0"],
        "the first failed; the rest wait behind it"
    );
    assert_eq!(other.count(), 3, "other webhooks are unaffected");
    // The server's first retry would be after 5 s; this webhook's is after 10 s.
    app.advance(Duration::from_secs(7));
    assert_eq!(
        app.deliver_due().await,
        0,
        "nothing overtakes the head, which waits its own schedule"
    );
    app.advance(Duration::from_secs(3));
    // The head fails again: 2 attempts with a one-entry schedule, exhausted;
    // then the others go, in order.
    app.deliver_due().await;
    assert_eq!(event_ids(&ordered.received()), ["0", "0", "1", "2"]);
}

#[tokio::test]
async fn fifo_holds_the_next_until_the_first_succeeds() {
    let app = TestApp::spawn().await;
    let ordered = Receiver::start().await;
    ordered.script([Reply::status(503)]);
    ordered.always(Reply::status(204));
    let project = app.project("acme").await;
    controlled(&app, &project, &ordered.url("/fifo"), json!({ "ordering": "fifo" })).await;
    for n in 0..2 {
        app.publish(&project, "order.created", json!({ "n": n })).await;
        app.advance(Duration::from_millis(1));
    }
    app.deliver_due().await;
    assert_eq!(event_ids(&ordered.received()), ["0"]);
    app.advance(Duration::from_secs(5));
    app.deliver_due().await;
    assert_eq!(event_ids(&ordered.received()), ["0", "0", "1"]);
}

/// On PostgreSQL, two nodes (two dispatchers, one database, one clock)
/// claim at every step at once; on SQLite (one process per data
/// directory) one node does. Either way the webhook gets 5 per simulated
/// second, never more.
#[tokio::test]
async fn nodes_sharing_a_database_never_send_more_than_the_rate_together() {
    use crate::support::backend::{Backend, backend};
    let first = TestApp::spawn().await;
    let second = match backend() {
        Backend::Postgres => Some(
            TestApp::start(
                first.config.clone(),
                std::sync::Arc::clone(&first.data_dir),
                std::sync::Arc::clone(&first.clock),
                false,
            )
            .await,
        ),
        Backend::Sqlite => None,
    };
    let limited = Receiver::start().await;
    limited.always(Reply::status(204));
    let project = first.project("acme").await;
    controlled(
        &first,
        &project,
        &limited.url("/limited"),
        json!({ "rate_limit_per_second": 5 }),
    )
    .await;
    for n in 0..20 {
        first.publish(&project, "order.created", json!({ "n": n })).await;
    }
    let mut per_second = [0usize; 3];
    let mut seen = 0;
    for step in 0..30 {
        let other = async {
            match &second {
                Some(app) => app.running().dispatcher.run_once().await.unwrap(),
                None => 0,
            }
        };
        let (mine, theirs) = tokio::join!(first.running().dispatcher.run_once(), other);
        assert!(mine.unwrap() + theirs <= 1, "one token per 200 ms, whoever claims it");
        let now = limited.count();
        per_second[step / 10] += now - seen;
        seen = now;
        first.advance(Duration::from_millis(100));
    }
    assert_eq!(per_second, [5, 5, 5]);
}
