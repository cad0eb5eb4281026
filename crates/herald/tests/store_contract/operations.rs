//! Long-running operations: persistence, transitions with their events in
//! the same transaction, idempotent transitions, the sweep (expiry and
//! stalled workers), deletion, and waking waiters.

use std::sync::Arc;
use std::time::Duration;

use herald::domain::job_webhook::{JobSignatureFormat, JobWebhookMode, JobWebhooks};
use herald::domain::operation::{
    Command, Operation, OperationError, OperationKind, OperationProgress, OperationState, Refusal, WorkerName,
};
use herald::domain::{EndpointUri, OperationId, ProjectId, SigningKind, Timestamp, WebhookId};
use herald::store::{
    DeleteOperationOutcome, DeliveryFilter, KeyAlgorithm, OperationFilter, PageRequest, Store, StoreError,
    StoredSigningKey, TransitionKey, TransitionOutcome, TransitionRequest,
};
use serde_json::json;

use crate::support::*;

fn new_operation(project: ProjectId, kind: &str, now: Timestamp) -> Operation {
    Operation::new(
        project,
        OperationKind::parse(kind).unwrap(),
        Some(json!({"prompt": "a cat"})),
        true,
        Duration::from_secs(3600),
        now,
    )
}

fn start(worker: &str) -> Command {
    Command::Start {
        worker: WorkerName::parse(worker).unwrap(),
        lease: Duration::from_secs(60),
    }
}

fn complete() -> Command {
    Command::Complete {
        worker: None,
        response: json!({"video": "gs://out.mp4"}),
    }
}

async fn run(
    store: &Arc<dyn Store>,
    project: ProjectId,
    id: OperationId,
    command: Command,
    now: Timestamp,
) -> TransitionOutcome {
    store
        .transition_operation(TransitionRequest {
            project_id: project,
            id,
            command,
            now,
            idempotency: None,
        })
        .await
        .expect("the transition runs")
}

async fn applied(
    store: &Arc<dyn Store>,
    project: ProjectId,
    id: OperationId,
    command: Command,
    now: Timestamp,
) -> Operation {
    match run(store, project, id, command, now).await {
        TransitionOutcome::Applied(operation) => operation,
        other => panic!("expected Applied, got {other:?}"),
    }
}

/// The operation events the project's webhooks received, by sequence:
/// `(sequence, type, state)`.
async fn events_of(store: &Arc<dyn Store>, project: ProjectId, id: OperationId) -> Vec<(u64, String, String)> {
    let deliveries = store
        .list_deliveries(
            project,
            DeliveryFilter::default(),
            PageRequest { size: 100, after: None },
        )
        .await
        .unwrap();
    let mut events = Vec::new();
    for delivery in deliveries.items {
        let event = get_event(store, project, delivery.event_id).await;
        let envelope: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
        let data = &envelope["data"];
        if data["id"] == id.to_string() {
            events.push((
                data["sequence"].as_u64().unwrap(),
                envelope["type"].as_str().unwrap().to_owned(),
                data["state"].as_str().unwrap().to_owned(),
            ));
        }
    }
    events.sort();
    events
}

contract_test!(
    fn operations_are_created_listed_and_filtered_per_project(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        let video = new_operation(project, "video", now);
        let research = new_operation(project, "research", now);
        let foreign = new_operation(other, "video", now);
        for op in [&video, &research, &foreign] {
            store.create_operation(op.clone(), vec![]).await.unwrap();
        }
        let got = store.get_operation(project, video.id).await.unwrap().expect("stored");
        assert_eq!(got, video, "stored and read back whole");
        assert!(store.get_operation(project, foreign.id).await.unwrap().is_none(), "another project's");

        applied(store, project, research.id, start("w1"), now).await;
        let list = |filter: OperationFilter, size: u32, after: Option<String>| async move {
            store.list_operations(project, filter, PageRequest { size, after }).await.unwrap()
        };
        let all = list(OperationFilter::default(), 100, None).await;
        let mut expected = vec![video.id, research.id];
        expected.sort();
        assert_eq!(all.items.iter().map(|op| op.id).collect::<Vec<_>>(), expected);
        let running = list(OperationFilter { state: Some(OperationState::Running), kind: None }, 100, None).await;
        assert_eq!(running.items.iter().map(|op| op.id).collect::<Vec<_>>(), [research.id]);
        let videos = list(OperationFilter { state: None, kind: Some(OperationKind::parse("video").unwrap()) }, 100, None).await;
        assert_eq!(videos.items.iter().map(|op| op.id).collect::<Vec<_>>(), [video.id]);
        let first = list(OperationFilter::default(), 1, None).await;
        assert_eq!(first.items.len(), 1);
        let second = list(OperationFilter::default(), 1, first.next_after.clone()).await;
        assert_eq!(second.items[0].id, expected[1]);
        let third = list(OperationFilter::default(), 1, second.next_after.clone()).await;
        assert!(third.items.is_empty() && third.next_after.is_none());
    }
);

contract_test!(
    fn each_transition_commits_with_its_event_in_sequence(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["operation.*"], now).await;
        let op = new_operation(project, "research", now);
        store.create_operation(op.clone(), vec![]).await.unwrap();

        applied(store, project, op.id, start("w1"), h.advance(secs(1))).await;
        applied(store, project, op.id, Command::Progress {
            worker: Some(WorkerName::parse("w1").unwrap()),
            progress: OperationProgress::new(Some(40.0), Some("reading")).unwrap(),
        }, h.advance(secs(1))).await;
        applied(store, project, op.id, Command::RequireAction { worker: None, action: json!({"confirm": "budget"}) }, h.advance(secs(1))).await;
        applied(store, project, op.id, Command::Resume, h.advance(secs(1))).await;
        let done = applied(store, project, op.id, complete(), h.advance(secs(1))).await;
        assert_eq!(done.status.state, OperationState::Succeeded);
        assert_eq!(done.status.response, Some(json!({"video": "gs://out.mp4"})));
        assert_eq!(store.get_operation(project, op.id).await.unwrap().unwrap(), done);

        let events = events_of(store, project, op.id).await;
        let expected = [
            (1, "operation.running", "running"),
            (2, "operation.progress", "running"),
            (3, "operation.requires_action", "requires_action"),
            (4, "operation.running", "running"),
            (5, "operation.succeeded", "succeeded"),
        ];
        let got: Vec<(u64, &str, &str)> = events.iter().map(|(s, t, st)| (*s, t.as_str(), st.as_str())).collect();
        assert_eq!(got, expected);

        // Refused: 409's material, and nothing written (no event either).
        let refused = run(store, project, op.id, Command::Cancel, h.advance(secs(1))).await;
        assert_eq!(refused, TransitionOutcome::Refused(Refusal::Illegal { state: OperationState::Succeeded, verb: "cancel" }));
        assert_eq!(events_of(store, project, op.id).await.len(), 5);
        assert_eq!(store.get_operation(project, op.id).await.unwrap().unwrap(), done);
        let missing = store
            .transition_operation(TransitionRequest { project_id: project, id: OperationId::generate(), command: Command::Cancel, now: h.now(), idempotency: None })
            .await;
        assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    }
);

contract_test!(
    fn cancel_and_failure_paths_publish_their_events(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;

        let pending = new_operation(project, "k", now);
        store.create_operation(pending.clone(), vec![]).await.unwrap();
        let cancelled = applied(store, project, pending.id, Command::Cancel, now).await;
        assert_eq!(cancelled.status.state, OperationState::Cancelled);
        assert_eq!(cancelled.status.error.as_ref().map(|e| e.code), Some(OperationError::CANCELLED));
        assert_eq!(events_of(store, project, pending.id).await, [(1, "operation.cancelled".into(), "cancelled".into())]);

        let running = new_operation(project, "k", now);
        store.create_operation(running.clone(), vec![]).await.unwrap();
        applied(store, project, running.id, start("w1"), now).await;
        let cancelling = applied(store, project, running.id, Command::Cancel, now).await;
        assert_eq!(cancelling.status.state, OperationState::Cancelling);
        let stopped = applied(store, project, running.id, Command::Fail { worker: None, error: OperationError::new(1, "stopped").unwrap() }, now).await;
        assert_eq!(stopped.status.state, OperationState::Cancelled);
        let types: Vec<String> = events_of(store, project, running.id).await.into_iter().map(|e| e.1).collect();
        assert_eq!(types, ["operation.running", "operation.cancelled"]);

        let failing = new_operation(project, "k", now);
        store.create_operation(failing.clone(), vec![]).await.unwrap();
        applied(store, project, failing.id, start("w1"), now).await;
        let failed = applied(store, project, failing.id, Command::Fail { worker: None, error: OperationError::new(13, "out of GPUs").unwrap() }, now).await;
        assert_eq!(failed.status.error, Some(OperationError::new(13, "out of GPUs").unwrap()));
        let types: Vec<String> = events_of(store, project, failing.id).await.into_iter().map(|e| e.1).collect();
        assert_eq!(types, ["operation.running", "operation.failed"]);
    }
);

contract_test!(
    fn a_transition_repeated_with_its_key_is_answered_as_the_first(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["*"], now).await;
        let op = new_operation(project, "k", now);
        store.create_operation(op.clone(), vec![]).await.unwrap();
        let keyed = |command: Command, hash: u8| TransitionRequest {
            project_id: project,
            id: op.id,
            command,
            now,
            idempotency: Some(TransitionKey { key: "k-1".into(), request_hash: [hash; 32] }),
        };
        let TransitionOutcome::Applied(first) = store.transition_operation(keyed(start("w1"), 1)).await.unwrap() else {
            panic!("applied");
        };
        // The operation moves on; the repeat still answers the first state.
        applied(store, project, op.id, complete(), h.advance(secs(1))).await;
        let again = store.transition_operation(keyed(start("w1"), 1)).await.unwrap();
        assert_eq!(again, TransitionOutcome::Replayed(first));
        let other = store.transition_operation(keyed(start("w1"), 2)).await;
        assert!(matches!(other, Err(StoreError::IdempotencyConflict)), "{other:?}");
        let types: Vec<String> = events_of(store, project, op.id).await.into_iter().map(|e| e.1).collect();
        assert_eq!(types, ["operation.running", "operation.succeeded"], "the repeat published nothing");
    }
);

contract_test!(
    fn the_sweep_expires_operations_and_reports_stalled_workers_once(h) {
        let store = h.store();
        let start_time = h.now();
        let project = new_project(store, "acme", start_time).await;
        webhook(store, project, &["*"], start_time).await;
        let expiring = Operation::new(project, OperationKind::parse("k").unwrap(), None, false, secs(120), start_time);
        let stalling = new_operation(project, "k", start_time);
        let finished = Operation::new(project, OperationKind::parse("k").unwrap(), None, false, secs(120), start_time);
        for op in [&expiring, &stalling, &finished] {
            store.create_operation(op.clone(), vec![]).await.unwrap();
        }
        applied(store, project, stalling.id, start("w1"), start_time).await;
        applied(store, project, finished.id, start("w2"), start_time).await;
        applied(store, project, finished.id, complete(), start_time).await;

        assert_eq!(store.sweep_operations(h.advance(secs(59))).await.unwrap().count(), 0, "nothing due yet");
        assert_eq!(store.sweep_operations(h.advance(secs(1))).await.unwrap().count(), 1, "the lease lapsed");
        let stalled = store.get_operation(project, stalling.id).await.unwrap().unwrap();
        assert_eq!(stalled.status.state, OperationState::Running);
        assert!(stalled.status.stall_reported);
        assert_eq!(store.sweep_operations(h.advance(secs(1))).await.unwrap().count(), 0, "reported once");
        // Another worker takes it over.
        let taken = applied(store, project, stalling.id, start("w9"), h.now()).await;
        assert_eq!(taken.status.lease.as_ref().unwrap().worker.as_str(), "w9");

        // At 120 s: the first expires; w9's lease runs to 121 s.
        assert_eq!(store.sweep_operations(h.advance(secs(59))).await.unwrap().count(), 1, "expiry at 120 s");
        let expired = store.get_operation(project, expiring.id).await.unwrap().unwrap();
        assert_eq!(expired.status.state, OperationState::Expired);
        assert_eq!(expired.status.error.unwrap().code, OperationError::DEADLINE_EXCEEDED);
        let finished_now = store.get_operation(project, finished.id).await.unwrap().unwrap();
        assert_eq!(finished_now.status.state, OperationState::Succeeded, "done operations are never swept");

        assert_eq!(events_of(store, project, expiring.id).await, [(1, "operation.expired".into(), "expired".into())]);
        let types: Vec<String> = events_of(store, project, stalling.id).await.into_iter().map(|e| e.1).collect();
        assert_eq!(types, ["operation.running", "operation.stalled"], "no event for the takeover");
    }
);

contract_test!(
    fn only_done_operations_are_deleted(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let op = new_operation(project, "k", now);
        store.create_operation(op.clone(), vec![]).await.unwrap();
        assert_eq!(store.delete_operation(project, op.id).await.unwrap(), DeleteOperationOutcome::NotDone(OperationState::Pending));
        applied(store, project, op.id, Command::Cancel, now).await;
        let other = new_project(store, "other", now).await;
        assert_eq!(store.delete_operation(other, op.id).await.unwrap(), DeleteOperationOutcome::NotFound);
        assert_eq!(store.delete_operation(project, op.id).await.unwrap(), DeleteOperationOutcome::Deleted);
        assert!(store.get_operation(project, op.id).await.unwrap().is_none());
        assert_eq!(store.delete_operation(project, op.id).await.unwrap(), DeleteOperationOutcome::NotFound);
    }
);

contract_test!(
    fn a_committed_change_wakes_the_operations_waiters(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let op = new_operation(project, "k", now);
        store.create_operation(op.clone(), vec![]).await.unwrap();
        let waiters = store.operation_waiters();
        let guard = waiters.watch(op.id);
        let woken = guard.notify().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        applied(store, project, op.id, start("w1"), now).await;
        tokio::time::timeout(Duration::from_secs(5), woken).await.expect("woken by the commit");
    }
);

fn with_job_webhooks(
    mut op: Operation,
    mode: JobWebhookMode,
    format: JobSignatureFormat,
    hosts: &[&str],
) -> (Operation, Vec<EndpointUri>) {
    let uris: Vec<EndpointUri> = hosts
        .iter()
        .map(|host| EndpointUri::parse(&format!("https://{host}/hook")).unwrap())
        .collect();
    op.status.user_metadata = Some(json!({"ticket": 42}));
    op.status.job_webhooks = Some(JobWebhooks {
        mode,
        format,
        webhook_ids: Vec::new(),
    });
    (op, uris)
}

fn job_ids(op: &Operation) -> Vec<WebhookId> {
    op.status
        .job_webhooks
        .as_ref()
        .unwrap()
        .webhook_ids
        .iter()
        .map(|id| WebhookId::parse(id).unwrap())
        .collect()
}

contract_test!(
    fn job_webhooks_are_hidden_rows_that_receive_the_jobs_events(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let project_hook = webhook(store, project, &["operation.*"], now).await;
        let (overriding, uris) = with_job_webhooks(new_operation(project, "k", now), JobWebhookMode::Override, JobSignatureFormat::JwtRs256, &["job0.example", "job1.example"]);
        let overriding = store.create_operation(overriding, uris).await.unwrap();
        let override_rows = job_ids(&overriding);
        assert_eq!(override_rows.len(), 2);
        assert_eq!(store.get_operation(project, overriding.id).await.unwrap().unwrap(), overriding, "stored with its rows");
        let (additional, uris) = with_job_webhooks(new_operation(project, "k", now), JobWebhookMode::Additional, JobSignatureFormat::Standard, &["job2.example"]);
        let additional = store.create_operation(additional, uris).await.unwrap();
        let additional_rows = job_ids(&additional);
        // Another job to the same URI and format shares the row; another format does not.
        let (same, uris) = with_job_webhooks(new_operation(project, "k", now), JobWebhookMode::Override, JobSignatureFormat::JwtRs256, &["job0.example"]);
        assert_eq!(job_ids(&store.create_operation(same, uris).await.unwrap()), [override_rows[0]]);
        let (other_format, uris) = with_job_webhooks(new_operation(project, "k", now), JobWebhookMode::Override, JobSignatureFormat::JwtEdDsa, &["job0.example"]);
        assert_ne!(job_ids(&store.create_operation(other_format, uris).await.unwrap()), [override_rows[0]]);

        // Not the project's webhooks: not listed, not gettable, not counted.
        let listed = store.list_webhooks(project, PageRequest { size: 100, after: None }, now).await.unwrap();
        assert_eq!(listed.items.iter().map(|w| w.id).collect::<Vec<_>>(), [project_hook]);
        assert!(store.get_webhook(project, override_rows[0], now).await.unwrap().is_none());

        applied(store, project, overriding.id, start("w1"), now).await;
        applied(store, project, additional.id, start("w1"), now).await;
        let deliveries = store
            .list_deliveries(project, DeliveryFilter::default(), PageRequest { size: 100, after: None })
            .await
            .unwrap()
            .items;
        let mut by_event: std::collections::HashMap<String, Vec<WebhookId>> = Default::default();
        for delivery in &deliveries {
            let event = get_event(store, project, delivery.event_id).await;
            let envelope: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
            assert_eq!(envelope["data"]["user_metadata"]["ticket"], 42);
            by_event.entry(envelope["data"]["id"].as_str().unwrap().to_owned()).or_default().push(delivery.webhook_id);
        }
        let mut expected_override: Vec<WebhookId> = override_rows.clone();
        expected_override.sort();
        let mut got = by_event.remove(&overriding.id.to_string()).unwrap();
        got.sort();
        assert_eq!(got, expected_override, "override: only the job's rows");
        let mut expected_additional = vec![additional_rows[0], project_hook];
        expected_additional.sort();
        let mut got = by_event.remove(&additional.id.to_string()).unwrap();
        got.sort();
        assert_eq!(got, expected_additional, "additional: the job's rows and the project's");

        // The claim hands them out with their per-job signing kind.
        let jobs = claim_jobs(store, claim_all(now)).await;
        let job_row = jobs.iter().find(|j| j.endpoint.webhook_id == override_rows[0]).expect("claimed");
        assert_eq!(job_row.endpoint.uri.as_str(), "https://job0.example/hook");
        assert!(job_row.endpoint.secrets.iter().all(|s| s.kind == SigningKind::Job(JobSignatureFormat::JwtRs256) && s.material.is_err()));
    }
);

fn signing_key(algorithm: KeyAlgorithm, kid: &str, now: Timestamp) -> StoredSigningKey {
    StoredSigningKey {
        kid: kid.to_owned(),
        algorithm,
        private_key: zeroize::Zeroizing::new(format!("private-{kid}")),
        create_time: now,
        retire_time: None,
    }
}

contract_test!(
    fn signing_keys_have_one_current_key_per_algorithm_and_rotate_with_an_overlap(h) {
        let store = h.store();
        let now = h.now();
        assert!(store.signing_keys(now).await.unwrap().is_empty());
        store
            .init_signing_keys(vec![signing_key(KeyAlgorithm::EdDsa, "ed-1", now), signing_key(KeyAlgorithm::Rs256, "rs-1", now)])
            .await
            .unwrap();
        // A second node's candidates lose: one current key per algorithm.
        store.init_signing_keys(vec![signing_key(KeyAlgorithm::EdDsa, "ed-other", now)]).await.unwrap();
        let kids = |keys: Vec<StoredSigningKey>| keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
        assert_eq!(kids(store.signing_keys(now).await.unwrap()), ["ed-1", "rs-1"]);
        let first = store.signing_keys(now).await.unwrap();
        assert_eq!(first[0].private_key.as_str(), "private-ed-1", "opened as it was sealed");

        let later = h.advance(secs(10));
        store
            .rotate_signing_keys(vec![signing_key(KeyAlgorithm::EdDsa, "ed-2", later)], later.saturating_add(secs(3600)))
            .await
            .unwrap();
        let keys = store.signing_keys(later).await.unwrap();
        assert_eq!(kids(keys.clone()), ["ed-1", "rs-1", "ed-2"]);
        assert_eq!(keys[0].retire_time, Some(later.saturating_add(secs(3600))));
        assert_eq!(keys[1].retire_time, None, "RS256 was not rotated");
        assert_eq!(keys[2].retire_time, None);
        let after = h.advance(secs(3600));
        assert_eq!(kids(store.signing_keys(after).await.unwrap()), ["rs-1", "ed-2"], "retired after the overlap");
    }
);
