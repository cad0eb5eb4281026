//! Endpoint health, replays, statistics and retention through the store:
//! what the completion transaction does to a webhook's counters and state,
//! the operational events it publishes, and the background steps.

use std::time::Duration;

use herald::domain::health::HealthPolicy;
use herald::domain::{ReplayId, WebhookState};
use herald::store::{
    CreatedReplay, DeliveryJob, NewReplay, NextStep, PruneRequest, ReplayFilter, ReplayState, WebhookPatch,
};

use crate::support::*;

fn policy() -> HealthPolicy {
    HealthPolicy {
        disable_after: Duration::from_secs(3600),
        disable_after_failures: 2,
        recovered_after_failures: 1,
    }
}

fn event_type(job: &DeliveryJob) -> String {
    let body: serde_json::Value = serde_json::from_slice(&job.payload).expect("JSON");
    body["type"].as_str().unwrap_or_default().to_owned()
}

contract_test!(
    fn scheduled_failures_disable_a_webhook_manual_ones_do_not_and_re_enabling_starts_afresh(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let dead = webhook(store, project, &["batch.*"], now).await;
        let ops = webhook(store, project, &["webhook.disabled"], now).await;
        publish(store, project, &["batch.succeeded"], now).await;

        // Failure 1 (scheduled), then a manual failure that does not count.
        let job = claim_jobs(store, claim_all(now)).await.remove(0);
        let mut failed = completion(&job, 500, NextStep::RetryAt(now), now);
        failed.health = Some(policy());
        store.complete(vec![failed]).await.unwrap();
        let job = claim_jobs(store, claim_all(now)).await.remove(0);
        store
            .complete(vec![completion(&job, 500, NextStep::RetryAt(now), now)])
            .await
            .unwrap();
        // Failure 2 an hour later: both limits pass; in the same transaction
        // the webhook is disabled and `webhook.disabled` is published to ops.
        let later = h.advance(Duration::from_secs(3600));
        let job = claim_jobs(store, claim_all(later)).await.remove(0);
        let mut failed = completion(&job, 500, NextStep::RetryAt(later), later);
        failed.health = Some(policy());
        store.complete(vec![failed]).await.unwrap();
        let disabled = get_webhook(store, project, dead, later).await;
        assert_eq!(disabled.state, WebhookState::DisabledDueToFailedDeliveries);
        assert!(disabled.state_reason.unwrap().contains("2 failed attempts in a row"));
        let jobs = claim_jobs(store, claim_all(later)).await;
        assert_eq!(jobs.len(), 1, "only the announcement is due: the dead webhook's delivery is held");
        assert_eq!(jobs[0].endpoint.webhook_id, ops);
        assert_eq!(event_type(&jobs[0]), "webhook.disabled");
        store
            .complete(vec![completion(&jobs[0], 204, NextStep::Succeeded, later)])
            .await
            .unwrap();

        // Re-enabled: the counters start afresh, so one failure is not enough.
        let patch = WebhookPatch {
            state: Some(WebhookState::Enabled),
            ..WebhookPatch::default()
        };
        store.update_webhook(project, dead, patch, later).await.unwrap();
        let job = claim_jobs(store, claim_all(later)).await.remove(0);
        assert_eq!(job.endpoint.webhook_id, dead);
        let mut failed = completion(&job, 500, NextStep::RetryAt(later), later);
        failed.health = Some(policy());
        store.complete(vec![failed]).await.unwrap();
        assert_eq!(get_webhook(store, project, dead, later).await.state, WebhookState::Enabled);
    }
);

contract_test!(
    fn a_replay_requeues_each_matching_delivery_once_and_refuses_an_overlap(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["batch.*"], now).await;
        publish(store, project, &["batch.a", "batch.b", "batch.c"], now).await;
        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 3);
        // Two fail for good, one succeeds.
        let outcomes = vec![
            completion(&jobs[0], 500, NextStep::Failed, now),
            completion(&jobs[1], 500, NextStep::Failed, now),
            completion(&jobs[2], 204, NextStep::Succeeded, now),
        ];
        store.complete(outcomes).await.unwrap();

        let later = h.advance(secs(60));
        let new = |filter, since| NewReplay {
            id: ReplayId::generate(),
            project_id: project,
            webhook_id: hook,
            since,
            until: later.saturating_add(secs(3600)),
            filter,
            now: later,
        };
        let CreatedReplay::Created(replay) = store.create_replay(new(ReplayFilter::Failed, now)).await.unwrap() else {
            panic!("created")
        };
        assert_eq!(replay.until, later, "until is clamped to the request's time");
        assert!(matches!(
            store.create_replay(new(ReplayFilter::All, now)).await.unwrap(),
            CreatedReplay::Overlaps(id) if id == replay.id
        ));
        let mut other = new(ReplayFilter::All, now);
        other.webhook_id = herald::domain::WebhookId::generate();
        assert!(matches!(
            store.create_replay(other).await.unwrap(),
            CreatedReplay::WebhookNotFound
        ));

        assert!(!store.step_replays(later).await.unwrap().is_done());
        assert!(store.step_replays(later).await.unwrap().is_done());
        let done = store.get_replay(project, replay.id).await.unwrap().unwrap();
        assert_eq!(done.state, ReplayState::Succeeded);
        assert_eq!((done.examined, done.requeued), (3, 2));
        let copies = claim_jobs(store, claim_all(later)).await;
        let mut replayed: Vec<_> = copies.iter().map(|j| j.event_id).collect();
        replayed.sort();
        let mut failed = vec![jobs[0].event_id, jobs[1].event_id];
        failed.sort();
        assert_eq!(replayed, failed, "the failed events, once each");
        assert!(copies.iter().all(|j| j.attempt_number == 1), "fresh deliveries");
        assert!(copies.iter().all(|j| j.delivery_id != jobs[0].delivery_id && j.delivery_id != jobs[1].delivery_id));
        // Finished: an overlapping replay may run now.
        assert!(matches!(
            store.create_replay(new(ReplayFilter::All, now)).await.unwrap(),
            CreatedReplay::Created(_)
        ));
        assert_eq!(store.list_replays(project, herald::store::PageRequest { size: 10, after: None }).await.unwrap().items.len(), 2);
    }
);

contract_test!(
    fn completions_roll_up_statistics_and_retention_keeps_unfinished_work(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["batch.*"], now).await;
        publish(store, project, &["batch.a", "batch.b"], now).await;
        let jobs = claim_jobs(store, claim_all(now)).await;
        store
            .complete(vec![
                completion(&jobs[0], 204, NextStep::Succeeded, now),
                completion(&jobs[1], 503, NextStep::RetryAt(now.saturating_add(secs(3600))), now),
            ])
            .await
            .unwrap();
        let minute = herald::domain::stats::minute_of(now);
        let cells = store.webhook_stats(project, hook, minute).await.unwrap().expect("the webhook exists");
        let count = |outcome: &str| cells.iter().filter(|c| c.outcome == outcome).map(|c| c.count).sum::<u64>();
        assert_eq!((count("success"), count("http_status")), (1, 1));
        assert!(cells.iter().all(|c| c.minute == minute));

        // Forty days on, the finished event goes; the one still pending stays.
        let later = h.advance(Duration::from_secs(40 * 24 * 3600));
        let step = store
            .prune_events(PruneRequest {
                before: minus_ms(later, 30 * 24 * 3600 * 1000),
                after: None,
            })
            .await
            .unwrap();
        assert_eq!((step.deleted, step.next), (1, None));
        assert_eq!(claim_jobs(store, claim_all(later)).await.len(), 1, "the pending delivery survives");
        assert!(store.prune_stats(later).await.unwrap().is_done());
        assert!(store.webhook_stats(project, hook, 0).await.unwrap().unwrap().is_empty());
    }
);

contract_test!(
    fn concurrent_replay_steps_never_queue_a_delivery_twice(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["batch.*"], now).await;
        let types: Vec<String> = (0..30).map(|n| format!("batch.e{n}")).collect();
        let types: Vec<&str> = types.iter().map(String::as_str).collect();
        publish(store, project, &types, now).await;
        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 30);
        let failed = jobs.iter().map(|j| completion(j, 500, NextStep::Failed, now)).collect();
        store.complete(failed).await.unwrap();

        let later = h.advance(secs(60));
        let created = store
            .create_replay(NewReplay {
                id: ReplayId::generate(),
                project_id: project,
                webhook_id: hook,
                since: now,
                until: later,
                filter: ReplayFilter::Failed,
                now: later,
            })
            .await
            .unwrap();
        let CreatedReplay::Created(replay) = created else { panic!("created") };
        // Several steps at once (on PostgreSQL, on separate connections):
        // the replay row is taken by one, the others skip it or find it done.
        let steps = (0..6).map(|_| store.step_replays(later));
        for step in futures_util::future::join_all(steps).await {
            step.unwrap();
        }
        while !store.step_replays(later).await.unwrap().is_done() {}
        let done = store.get_replay(project, replay.id).await.unwrap().unwrap();
        assert_eq!((done.state, done.examined, done.requeued), (ReplayState::Succeeded, 30, 30));
        assert_eq!(claim_jobs(store, claim_all(later)).await.len(), 30, "thirty copies, not more");
    }
);
