//! The delivery queue: claims, leases and their fence, completions,
//! per-webhook caps, releases, statistics and recovery.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use herald::domain::{AttemptErrorKind, AttemptRecord, DeliveryState, WebhookId, WebhookState};
use herald::store::{CompletionResult, NextStep, QueueStats, Release, WebhookPatch};

use crate::support::*;

contract_test!(
    fn a_lapsed_lease_is_reclaimed_and_the_old_token_is_fenced(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        let [event_id] = publish(store, project, &["batch.succeeded"], now).await[..] else {
            unreachable!()
        };

        let first = claim_jobs(store, claim_all(now)).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempt_number, 1);
        assert_eq!(first[0].event_id, event_id);
        assert_eq!(first[0].endpoint.webhook_id, hook);
        assert_eq!(first[0].endpoint.secrets.len(), 1, "the signing secret comes with the job");
        let lease_until = now.saturating_add(LEASE);
        assert!(claim_jobs(store, claim_all(now)).await.is_empty(), "a leased delivery is not claimable");
        let view = delivery(store, project, event_id).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Pending, 0));
        assert!(
            claim_jobs(store, claim_all(minus_ms(lease_until, 1))).await.is_empty(),
            "not before the lease lapses"
        );

        let later = lease_until;
        let second = claim_jobs(store, claim_all(later)).await;
        assert_eq!(second.len(), 1, "a lapsed lease is claimable again");
        assert_eq!(second[0].delivery_id, first[0].delivery_id);
        assert_eq!(second[0].attempt_number, 2, "the lost attempt counts");
        assert_ne!(second[0].lease, first[0].lease, "under a new token");
        let view = delivery(store, project, event_id).await;
        assert_eq!(view.attempt_count, 1);
        let lapsed = view.last_attempt.expect("the lapsed attempt is logged");
        assert_eq!(lapsed.number, 1);
        assert_eq!(lapsed.error_kind, Some(AttemptErrorKind::Interrupted));
        assert_eq!(view.last_error.as_deref(), Some("interrupted"));

        // The first worker reports late: its attempt is logged, the delivery is not its to change.
        let late = later.saturating_add(secs(1));
        let stale = store
            .complete(vec![completion(&first[0], 204, NextStep::Succeeded, late)])
            .await
            .unwrap();
        assert_eq!(stale, [CompletionResult::Stale]);
        let view = delivery(store, project, event_id).await;
        assert_eq!(view.state, DeliveryState::Pending, "a stale completion changes nothing");
        let logged = view.last_attempt.expect("the late attempt is logged");
        assert_eq!((logged.number, logged.status_code), (1, Some(204)));
        assert!(
            claim_jobs(store, claim_all(late)).await.is_empty(),
            "the new lease still holds"
        );

        let applied = store
            .complete(vec![completion(&second[0], 200, NextStep::Succeeded, late)])
            .await
            .unwrap();
        assert_eq!(applied, [CompletionResult::Applied]);
        let view = delivery(store, project, event_id).await;
        assert_eq!(view.state, DeliveryState::Succeeded);
        assert_eq!(view.attempt_count, 2);
        assert_eq!(view.last_attempt.map(|a| (a.number, a.status_code)), Some((2, Some(200))));
        assert_eq!(view.last_error, None);
        assert_eq!(view.next_attempt_time, None);
        // A second completion with the same (now used) token changes nothing.
        let again = store
            .complete(vec![completion(&second[0], 500, NextStep::Failed, late)])
            .await
            .unwrap();
        assert_eq!(again, [CompletionResult::Stale]);
        assert_eq!(delivery(store, project, event_id).await.state, DeliveryState::Succeeded);
    }
);

contract_test!(
    fn a_retry_is_due_at_its_time_and_not_before(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        let [event_id] = publish(store, project, &["batch.succeeded"], now).await[..] else {
            unreachable!()
        };
        let job = claim_jobs(store, claim_all(now)).await.remove(0);
        let retry_at = now.saturating_add(secs(90));
        let result = store
            .complete(vec![completion(&job, 503, NextStep::RetryAt(retry_at), now)])
            .await
            .unwrap();
        assert_eq!(result, [CompletionResult::Applied]);

        let view = delivery(store, project, event_id).await;
        assert_eq!(view.state, DeliveryState::Pending);
        assert_eq!(view.attempt_count, 1);
        assert_eq!(view.next_attempt_time, Some(retry_at));
        assert_eq!(view.last_error.as_deref(), Some("http_status"));
        let last = view.last_attempt.expect("the attempt is logged");
        assert_eq!(last, attempt(1, now, 503), "the attempt is kept as reported");
        assert_eq!(
            store.queue_stats(now).await.unwrap(),
            QueueStats {
                pending: 1,
                retrying: 1,
                in_flight: 0,
                oldest_due: None
            }
        );

        let before = minus_ms(retry_at, 1);
        let batch = store.claim(claim_all(before)).await.unwrap();
        assert!(batch.jobs.is_empty(), "not claimable before its time");
        assert!(
            batch.next_due.is_some_and(|due| due <= retry_at),
            "the claim says when work is due next: {:?}",
            batch.next_due
        );
        let jobs = claim_jobs(store, claim_all(retry_at)).await;
        assert_eq!(jobs.len(), 1, "claimable at its time");
        assert_eq!(jobs[0].attempt_number, 2);
        assert_eq!(jobs[0].delivery_id, job.delivery_id);
    }
);

contract_test!(
    fn succeeded_and_failed_completions_finish_their_deliveries(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let good = webhook(store, project, &["*"], now).await;
        let bad = webhook(store, project, &["*"], now).await;
        let [event_id] = publish(store, project, &["batch.succeeded"], now).await[..] else {
            unreachable!()
        };
        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 2);
        let job_for = |hook| jobs.iter().find(|j| j.endpoint.webhook_id == hook).unwrap();
        let done = h.advance(secs(2));
        let mut failed = completion(job_for(bad), 400, NextStep::Failed, done);
        failed.last_error = Some("attempts_exhausted".into());
        let results = store
            .complete(vec![completion(job_for(good), 204, NextStep::Succeeded, done), failed])
            .await
            .unwrap();
        assert_eq!(results, [CompletionResult::Applied, CompletionResult::Applied]);

        let event = get_event(store, project, event_id).await;
        let view_of = |hook| event.deliveries.iter().find(|d| d.webhook_id == hook).unwrap();
        let ok = view_of(good);
        assert_eq!((ok.state, ok.attempt_count), (DeliveryState::Succeeded, 1));
        assert_eq!((ok.next_attempt_time, ok.last_error.as_deref()), (None, None));
        assert_eq!(ok.last_attempt.as_ref().and_then(|a| a.status_code), Some(204));
        let ko = view_of(bad);
        assert_eq!((ko.state, ko.attempt_count), (DeliveryState::Failed, 1));
        assert_eq!(ko.next_attempt_time, None);
        assert_eq!(ko.last_error.as_deref(), Some("attempts_exhausted"));
        assert_eq!(ko.last_attempt.as_ref().and_then(|a| a.status_code), Some(400));

        let far = done.saturating_add(Duration::from_secs(7 * 24 * 3600));
        assert!(claim_jobs(store, claim_all(far)).await.is_empty(), "finished deliveries never come back");
        assert_eq!(store.queue_stats(far).await.unwrap(), QueueStats::default());
    }
);

contract_test!(
    fn a_completion_that_disables_the_webhook_holds_its_deliveries(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        let ids = publish(store, project, &["a.one", "a.two"], now).await;
        let job = claim_jobs(store, claim(now, 1, 10, vec![], 10)).await.remove(0);
        let mut gone = completion(&job, 410, NextStep::Failed, now);
        gone.disable_webhook = Some("the endpoint answered 410 Gone".into());
        assert_eq!(store.complete(vec![gone]).await.unwrap(), [CompletionResult::Applied]);

        let disabled = get_webhook(store, project, hook, now).await;
        assert_eq!(disabled.state, WebhookState::Disabled);
        assert_eq!(disabled.state_reason.as_deref(), Some("the endpoint answered 410 Gone"));
        let later = h.advance(secs(3600));
        assert!(claim_jobs(store, claim_all(later)).await.is_empty(), "the other delivery is held");
        let held = ids.iter().find(|id| **id != job.event_id).copied().unwrap();
        let view = delivery(store, project, held).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Pending, 0), "held, not failed");
        assert_eq!(store.queue_stats(later).await.unwrap().oldest_due, None, "held is not due");
        assert_eq!(
            store.publish(request(project, vec![event("a.three", later)], later)).await.unwrap(),
            herald::store::PublishOutcome::Published { deliveries: 0 },
            "a disabled webhook gets no new deliveries"
        );

        let patch = WebhookPatch {
            state: Some(WebhookState::Enabled),
            ..WebhookPatch::default()
        };
        let enabled = store.update_webhook(project, hook, patch, later).await.unwrap().unwrap();
        assert_eq!((enabled.state, enabled.state_reason), (WebhookState::Enabled, None));
        let jobs = claim_jobs(store, claim_all(later)).await;
        assert_eq!(jobs.len(), 1, "re-enabling resumes the held delivery");
        assert_eq!(jobs[0].event_id, held);
    }
);

contract_test!(
    fn claims_never_lease_more_than_the_per_webhook_maximum(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let busy = webhook(store, project, &["busy.*"], now).await;
        let calm = webhook(store, project, &["calm.*"], now).await;
        publish(store, project, &["busy.x"; 6], now).await;
        publish(store, project, &["calm.x"], now).await;

        let mut leased: HashMap<WebhookId, Vec<_>> = HashMap::new();
        let first = claim_jobs(store, claim(now, 100, 100, vec![], 2)).await;
        for job in first {
            leased.entry(job.endpoint.webhook_id).or_default().push(job);
        }
        assert_eq!(leased[&busy].len(), 2, "capped at 2");
        assert_eq!(leased[&calm].len(), 1, "the cap is per webhook");
        let now = h.advance(secs(1));
        assert!(
            claim_jobs(store, claim(now, 100, 100, vec![], 2)).await.is_empty(),
            "unexpired leases from earlier claims count"
        );
        let third = claim_jobs(store, claim(now, 100, 100, vec![], 3)).await;
        assert_eq!(third.len(), 1, "a higher maximum leaves room for one more");

        let done = leased.get_mut(&busy).unwrap().remove(0);
        let result = store
            .complete(vec![completion(&done, 200, NextStep::Succeeded, now)])
            .await
            .unwrap();
        assert_eq!(result, [CompletionResult::Applied]);
        let fourth = claim_jobs(store, claim(now, 100, 100, vec![], 3)).await;
        assert_eq!(fourth.len(), 1, "a completion frees one place");
        assert!(claim_jobs(store, claim(now, 100, 100, vec![], 3)).await.is_empty());

        // Every lease lapses at once: lapsed leases do not count, and the
        // maximum still bounds what one claim takes.
        let lapsed = h.advance(LEASE.saturating_add(secs(1)));
        let jobs = claim_jobs(store, claim(lapsed, 100, 100, vec![], 2)).await;
        let busy_jobs = jobs.iter().filter(|j| j.endpoint.webhook_id == busy).count();
        assert_eq!(busy_jobs, 2);
        assert_eq!(jobs.len(), 3);
    }
);

contract_test!(
    fn claims_respect_room_default_room_and_limit(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let a = webhook(store, project, &["a.*"], now).await;
        let b = webhook(store, project, &["b.*"], now).await;
        for _ in 0..5 {
            publish(store, project, &["a.x", "b.x"], now).await;
        }
        let jobs = claim_jobs(store, claim(now, 100, 2, vec![(a, 0)], 100)).await;
        assert_eq!(jobs.len(), 2, "default room for B");
        assert!(jobs.iter().all(|j| j.endpoint.webhook_id == b), "A has no room");
        let jobs = claim_jobs(store, claim(now, 100, 0, vec![(a, 1)], 100)).await;
        assert_eq!(jobs.len(), 1, "a webhook's own room overrides the default");
        assert_eq!(jobs[0].endpoint.webhook_id, a);
        let jobs = claim_jobs(store, claim(now, 3, 10, vec![], 100)).await;
        assert_eq!(jobs.len(), 3, "the total limit holds");
        let rest = claim_jobs(store, claim_all(now)).await;
        assert_eq!(rest.len(), 4, "10 in all, each claimed once");
        let ids: HashSet<_> = jobs.iter().chain(&rest).map(|j| j.delivery_id).collect();
        assert_eq!(ids.len(), 7);
    }
);

contract_test!(
    fn released_leases_are_due_at_once_and_only_started_attempts_count(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        let ids = publish(store, project, &["a.started", "a.queued"], now).await;
        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 2);
        let started = jobs.iter().find(|j| j.event_id == ids[0]).unwrap();
        let queued = jobs.iter().find(|j| j.event_id == ids[1]).unwrap();

        let stop = h.advance(secs(3));
        let cut_off = AttemptRecord::cut_off_at_shutdown(1, now, secs(3));
        store
            .release(
                vec![
                    Release {
                        delivery_id: started.delivery_id,
                        lease: started.lease,
                        interrupted: Some(cut_off.clone()),
                    },
                    Release {
                        delivery_id: queued.delivery_id,
                        lease: queued.lease,
                        interrupted: None,
                    },
                ],
                stop,
            )
            .await
            .unwrap();

        let view = delivery(store, project, ids[0]).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Pending, 1));
        assert_eq!(view.last_attempt, Some(cut_off), "the cut-off attempt is logged");
        assert_eq!(view.next_attempt_time, Some(stop), "due at once");
        let view = delivery(store, project, ids[1]).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Pending, 0));
        assert_eq!(view.last_attempt, None, "an attempt never sent is not logged");
        assert_eq!(view.next_attempt_time, Some(stop));

        let again = claim_jobs(store, claim_all(stop)).await;
        assert_eq!(again.len(), 2, "claimable at once, though the leases ran longer");
        let number_of = |id| again.iter().find(|j| j.event_id == id).unwrap().attempt_number;
        assert_eq!((number_of(ids[0]), number_of(ids[1])), (2, 1));

        // A release under a token that is no longer the lease's changes nothing.
        store
            .release(
                vec![Release {
                    delivery_id: started.delivery_id,
                    lease: started.lease,
                    interrupted: Some(AttemptRecord::cut_off_at_shutdown(1, now, secs(3))),
                }],
                stop,
            )
            .await
            .unwrap();
        assert!(claim_jobs(store, claim_all(stop)).await.is_empty(), "the current leases hold");
        assert_eq!(delivery(store, project, ids[0]).await.attempt_count, 1);
    }
);

contract_test!(
    fn queue_stats_count_pending_retrying_in_flight_and_the_oldest_due(h) {
        let store = h.store();
        assert_eq!(store.queue_stats(h.now()).await.unwrap(), QueueStats::default());
        let t0 = h.now();
        let project = new_project(store, "acme", t0).await;
        let hook = webhook(store, project, &["*"], t0).await;
        publish(store, project, &["a.first"], t0).await;
        let t1 = h.advance(secs(10));
        publish(store, project, &["a.second"], t1).await;
        publish(store, project, &["a.third"], t1).await;
        assert_eq!(
            store.queue_stats(t1).await.unwrap(),
            QueueStats {
                pending: 3,
                retrying: 0,
                in_flight: 0,
                oldest_due: Some(t0)
            }
        );
        let job = claim_jobs(store, claim(t1, 1, 10, vec![], 10)).await.remove(0);
        assert_eq!(
            store.queue_stats(t1).await.unwrap(),
            QueueStats {
                pending: 3,
                retrying: 0,
                in_flight: 1,
                oldest_due: Some(t1)
            },
            "the oldest was claimed first"
        );
        let retry_at = t1.saturating_add(secs(60));
        store
            .complete(vec![completion(&job, 500, NextStep::RetryAt(retry_at), t1)])
            .await
            .unwrap();
        assert_eq!(
            store.queue_stats(t1).await.unwrap(),
            QueueStats {
                pending: 3,
                retrying: 1,
                in_flight: 0,
                oldest_due: Some(t1)
            }
        );
        let second = claim_jobs(store, claim(t1, 1, 10, vec![], 10)).await.remove(0);
        store
            .complete(vec![completion(&second, 204, NextStep::Succeeded, t1)])
            .await
            .unwrap();
        let stats = store.queue_stats(t1).await.unwrap();
        assert_eq!((stats.pending, stats.retrying, stats.in_flight), (2, 1, 0));

        let patch = WebhookPatch {
            state: Some(WebhookState::Disabled),
            ..WebhookPatch::default()
        };
        store.update_webhook(project, hook, patch, t1).await.unwrap().unwrap();
        assert_eq!(
            store.queue_stats(retry_at).await.unwrap(),
            QueueStats {
                pending: 2,
                retrying: 1,
                in_flight: 0,
                oldest_due: None
            },
            "held deliveries are pending but not due"
        );
    }
);

contract_test!(
    fn leases_of_a_crashed_run_end_when_the_store_opens_again(h) {
        let now = h.now();
        let project = new_project(h.store(), "acme", now).await;
        webhook(h.store(), project, &["*"], now).await;
        let ids = publish(h.store(), project, &["batch.succeeded"], now).await;
        let leased = claim_jobs(h.store(), claim_all(now)).await;
        assert_eq!(leased.len(), 1);

        let reopened = h.advance(secs(2));
        h.restart_after_crash().await;
        let store = h.store();
        let view = delivery(store, project, ids[0]).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Pending, 1));
        let lost = view.last_attempt.expect("the lost attempt is logged");
        assert_eq!(lost.number, 1);
        assert_eq!(lost.error_kind, Some(AttemptErrorKind::Interrupted));
        assert_eq!(view.last_error.as_deref(), Some("interrupted"));

        // The lease would run 28 s more; the new run must not wait for it.
        let jobs = claim_jobs(store, claim_all(reopened)).await;
        assert_eq!(jobs.len(), 1, "claimable at once");
        assert_eq!(jobs[0].attempt_number, 2);
        assert_ne!(jobs[0].lease, leased[0].lease);
        let late = store
            .complete(vec![completion(&leased[0], 204, NextStep::Succeeded, reopened)])
            .await
            .unwrap();
        assert_eq!(late, [CompletionResult::Stale], "the crashed run's token is fenced");
        let done = store
            .complete(vec![completion(&jobs[0], 204, NextStep::Succeeded, reopened)])
            .await
            .unwrap();
        assert_eq!(done, [CompletionResult::Applied]);
    }
);

contract_test!(
    fn a_completion_without_an_attempt_finishes_the_delivery_as_given(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        let ids = publish(store, project, &["batch.succeeded"], now).await;
        let job = claim_jobs(store, claim_all(now)).await.remove(0);
        let mut expired = completion(&job, 0, NextStep::Failed, now);
        expired.attempt = None;
        expired.last_error = Some("expired".into());
        assert_eq!(store.complete(vec![expired]).await.unwrap(), [CompletionResult::Applied]);
        let view = delivery(store, project, ids[0]).await;
        assert_eq!((view.state, view.attempt_count), (DeliveryState::Failed, 0), "no attempt was made");
        assert_eq!(view.last_attempt, None);
        assert_eq!(view.last_error.as_deref(), Some("expired"));
    }
);

contract_test!(
    fn every_lapsed_lease_counts_one_interrupted_attempt(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        let ids = publish(store, project, &["batch.succeeded"], now).await;
        let mut tokens = HashSet::new();
        let mut at = now;
        for number in 1..=3 {
            let jobs = claim_jobs(store, claim_all(at)).await;
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].attempt_number, number);
            assert!(tokens.insert(jobs[0].lease), "a fresh token every claim");
            at = at.saturating_add(LEASE);
        }
        let view = delivery(store, project, ids[0]).await;
        assert_eq!(view.attempt_count, 2);
        let last = view.last_attempt.expect("logged");
        assert_eq!((last.number, last.error_kind), (2, Some(AttemptErrorKind::Interrupted)));
    }
);

contract_test!(
    fn a_claim_results_in_one_result_per_completion_in_order(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        publish(store, project, &["a.x", "a.y", "a.z"], now).await;
        let jobs = claim_jobs(store, claim_all(now)).await;
        assert_eq!(jobs.len(), 3);
        let mut stale = completion(&jobs[1], 200, NextStep::Succeeded, now);
        stale.lease = herald::store::LeaseToken(jobs[1].lease.0 ^ 1);
        let results = store
            .complete(vec![
                completion(&jobs[0], 200, NextStep::Succeeded, now),
                stale,
                completion(&jobs[2], 500, NextStep::Failed, now),
            ])
            .await
            .unwrap();
        assert_eq!(
            results,
            [CompletionResult::Applied, CompletionResult::Stale, CompletionResult::Applied]
        );
    }
);

contract_test!(
    fn a_claim_at_the_cap_does_not_report_work_due_in_the_past(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        publish(store, project, &["a.x", "a.y"], now).await;
        assert_eq!(claim_jobs(store, claim(now, 10, 10, vec![], 1)).await.len(), 1);
        let now = h.advance(secs(1));
        let batch = store.claim(claim(now, 10, 10, vec![], 1)).await.unwrap();
        assert!(batch.jobs.is_empty(), "the webhook is at its cap");
        // Its waiting delivery cannot be claimed before the lease ends or
        // is completed: a next_due in the past would have a dispatcher
        // claim again at once, and again, for nothing.
        assert!(
            batch.next_due.is_none_or(|due| due > now),
            "next_due {:?} is not after now {now:?}",
            batch.next_due
        );
    }
);
