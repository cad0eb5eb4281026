//! The delivery log (listing, filters, paging, every attempt) and the
//! manual leases behind redelivery and ping.

use bytes::Bytes;
use herald::domain::{DeliveryId, DeliveryState, EventId, EventType};
use herald::store::{DeliveryFilter, ManualLease, ManualLeaseRequest, NewEvent, NextStep, PageRequest, PingRequest};

use crate::support::*;

fn page(size: u32, after: Option<String>) -> PageRequest {
    PageRequest { size, after }
}

contract_test!(
    fn deliveries_list_newest_first_with_filters_and_pages(h) {
        let store = h.store();
        let start = h.now();
        let project = new_project(store, "acme", start).await;
        let other = new_project(store, "other", start).await;
        let first_hook = webhook(store, project, &["*"], start).await;
        let second_hook = webhook(store, project, &["batch.*"], start).await;
        webhook(store, other, &["*"], start).await;
        publish(store, other, &["batch.succeeded"], start).await;
        let early = publish(store, project, &["batch.succeeded", "video.generated"], start).await;
        let later = h.advance(secs(10));
        let late = publish(store, project, &["batch.failed"], later).await;

        let all = store
            .list_deliveries(project, DeliveryFilter::default(), page(100, None))
            .await
            .unwrap();
        assert_eq!(all.items.len(), 5, "2 + 1 + 2 deliveries, none of the other project's");
        assert!(all.next_after.is_none());
        let ids: Vec<String> = all.items.iter().map(|d| d.id.to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, sorted, "newest first");
        assert!(all.items.iter().all(|d| d.state == DeliveryState::Pending && d.next_attempt_time.is_some()));
        // "Newest" is by id: ids made in the same millisecond (of the real
        // clock, whatever the test clock says) need not sort by creation.
        let late_delivery = all.items.iter().find(|d| d.event_id == late[0]).expect("the late event's delivery is listed");
        assert_eq!(late_delivery.event_type.as_str(), "batch.failed");

        let first_page = store
            .list_deliveries(project, DeliveryFilter::default(), page(3, None))
            .await
            .unwrap();
        assert_eq!(first_page.items.len(), 3);
        let rest = store
            .list_deliveries(project, DeliveryFilter::default(), page(3, first_page.next_after.clone()))
            .await
            .unwrap();
        let paged: Vec<String> = first_page.items.iter().chain(&rest.items).map(|d| d.id.to_string()).collect();
        assert_eq!(paged, ids, "pages continue after the last id");
        assert!(rest.next_after.is_none());

        let count = |filter: DeliveryFilter| async move {
            store.list_deliveries(project, filter, page(100, None)).await.unwrap().items.len()
        };
        let by_hook = DeliveryFilter { webhook_id: Some(second_hook), ..Default::default() };
        assert_eq!(count(by_hook).await, 2, "batch.* got two events");
        let by_event = DeliveryFilter { event_id: Some(early[1]), ..Default::default() };
        assert_eq!(count(by_event).await, 1, "video.generated went to one webhook");
        assert_eq!(count(DeliveryFilter { since: Some(later), ..Default::default() }).await, 2);
        assert_eq!(count(DeliveryFilter { until: Some(later), ..Default::default() }).await, 3);

        // Finish some: one succeeds, one fails, one is retrying; the rest stay pending.
        let jobs: Vec<_> = claim_jobs(store, claim_all(later))
            .await
            .into_iter()
            .filter(|job| [first_hook, second_hook].contains(&job.endpoint.webhook_id))
            .collect();
        assert_eq!(jobs.len(), 5);
        let done = later.saturating_add(secs(1));
        let retry_at = done.saturating_add(secs(60));
        store
            .complete(vec![
                completion(&jobs[0], 200, NextStep::Succeeded, done),
                completion(&jobs[1], 500, NextStep::Failed, done),
                completion(&jobs[2], 503, NextStep::RetryAt(retry_at), done),
            ])
            .await
            .unwrap();
        let state = |state| DeliveryFilter { state: Some(state), ..Default::default() };
        assert_eq!(count(state(DeliveryState::Succeeded)).await, 1);
        assert_eq!(count(state(DeliveryState::Failed)).await, 1);
        assert_eq!(count(state(DeliveryState::Pending)).await, 3, "in flight counts as pending");
        let mixed = DeliveryFilter {
            webhook_id: Some(first_hook),
            state: Some(DeliveryState::Pending),
            ..Default::default()
        };
        let pending_first: Vec<_> = store.list_deliveries(project, mixed, page(100, None)).await.unwrap().items;
        assert!(pending_first.iter().all(|d| d.webhook_id == first_hook && d.state == DeliveryState::Pending));

        let retrying = store.get_delivery(project, jobs[2].delivery_id).await.unwrap().expect("found");
        assert_eq!(retrying.summary.state, DeliveryState::Pending);
        assert_eq!(retrying.summary.next_attempt_time, Some(retry_at));
        assert_eq!(retrying.summary.last_error.as_deref(), Some("http_status"));
        assert_eq!(retrying.attempts.len(), 1);
        assert_eq!(retrying.attempts[0].status_code, Some(503));
        let in_flight = store.get_delivery(project, jobs[3].delivery_id).await.unwrap().expect("found");
        assert!(in_flight.summary.in_flight);
        assert_eq!(in_flight.summary.next_attempt_time, None, "a lease's expiry is not a due time");
        assert!(in_flight.attempts.is_empty());
        assert!(
            store.get_delivery(other, jobs[0].delivery_id).await.unwrap().is_none(),
            "another project's delivery is not found"
        );
        assert!(store.get_delivery(project, DeliveryId::generate()).await.unwrap().is_none());
    }
);

contract_test!(
    fn a_redelivery_leases_any_finished_or_waiting_delivery_and_logs_its_attempt(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        publish(store, project, &["batch.succeeded"], now).await;
        let job = claim_jobs(store, claim_all(now)).await.remove(0);
        let lease = |at: herald::domain::Timestamp, project| ManualLeaseRequest {
            project,
            delivery_id: job.delivery_id,
            now: at,
            lease_until: at.saturating_add(LEASE),
        };
        assert!(
            matches!(store.lease_for_redelivery(lease(now, project)).await.unwrap(), ManualLease::InFlight),
            "not while an attempt is in flight"
        );
        store.complete(vec![completion(&job, 500, NextStep::Failed, now)]).await.unwrap();
        assert!(matches!(
            store.lease_for_redelivery(lease(now, other)).await.unwrap(),
            ManualLease::NotFound
        ));

        let later = h.advance(secs(5));
        let ManualLease::Leased { job: manual, before } = store.lease_for_redelivery(lease(later, project)).await.unwrap()
        else {
            panic!("a failed delivery can be redelivered")
        };
        assert_eq!(before.state, DeliveryState::Failed);
        assert_eq!(manual.attempt_number, 2, "numbered after the last attempt");
        assert_eq!(manual.endpoint.webhook_id, hook);
        assert_eq!(manual.endpoint.secrets.len(), 1, "with the secrets to sign with");
        assert_eq!(manual.payload, job.payload, "the exact stored bytes");
        assert!(
            claim_jobs(store, claim_all(later.saturating_add(secs(1)))).await.is_empty(),
            "the dispatcher does not claim it meanwhile"
        );
        assert!(matches!(
            store.lease_for_redelivery(lease(later, project)).await.unwrap(),
            ManualLease::InFlight
        ));
        store.complete(vec![completion(&manual, 200, NextStep::Succeeded, later)]).await.unwrap();
        let detail = store.get_delivery(project, job.delivery_id).await.unwrap().expect("found");
        assert_eq!(detail.summary.state, DeliveryState::Succeeded);
        assert_eq!(detail.summary.attempt_count, 2);
        let numbers: Vec<_> = detail.attempts.iter().map(|a| (a.number, a.status_code)).collect();
        assert_eq!(numbers, [(1, Some(500)), (2, Some(200))], "every attempt, oldest first");

        store.delete_webhook(project, hook, later).await.unwrap();
        assert!(matches!(
            store.lease_for_redelivery(lease(later, project)).await.unwrap(),
            ManualLease::WebhookDeleted
        ));
    }
);

contract_test!(
    fn a_ping_is_an_event_with_one_leased_delivery_to_its_webhook(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        let hook = webhook(store, project, &["*"], now).await;
        let bystander = webhook(store, project, &["*"], now).await;
        let ping = |project, delivery_id| PingRequest {
            project,
            webhook_id: hook,
            event: NewEvent {
                id: EventId::generate(),
                event_type: EventType::parse("webhook.ping").unwrap(),
                timestamp: now,
                payload: Bytes::from_static(br#"{"ping":true}"#),
            },
            delivery_id,
            now,
            lease_until: now.saturating_add(LEASE),
        };
        assert!(store.create_ping(ping(other, DeliveryId::generate())).await.unwrap().is_none());
        let delivery_id = DeliveryId::generate();
        let job = store.create_ping(ping(project, delivery_id)).await.unwrap().expect("the webhook exists");
        assert_eq!((job.delivery_id, job.attempt_number), (delivery_id, 1));
        assert_eq!(job.endpoint.webhook_id, hook);
        assert_eq!(&job.payload[..], br#"{"ping":true}"#);
        assert!(claim_jobs(store, claim_all(now)).await.is_empty(), "leased already; no fan-out to others");
        let listed = store
            .list_deliveries(project, DeliveryFilter { webhook_id: Some(bystander), ..Default::default() }, page(10, None))
            .await
            .unwrap();
        assert!(listed.items.is_empty(), "no delivery to the other webhook");

        store.complete(vec![completion(&job, 200, NextStep::Succeeded, now)]).await.unwrap();
        let detail = store.get_delivery(project, delivery_id).await.unwrap().expect("in the log");
        assert_eq!(detail.summary.state, DeliveryState::Succeeded);
        assert_eq!(detail.summary.event_type.as_str(), "webhook.ping");
        assert_eq!(detail.attempts.len(), 1);
        assert_eq!(get_event(store, project, job.event_id).await.deliveries.len(), 1);
    }
);
