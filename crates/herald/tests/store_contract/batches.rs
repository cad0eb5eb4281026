//! Files and batches: chunked files, validation leases, request leases
//! (fenced, fair between batches), finishing (result files in input order,
//! the status event committed with the status), cancel, and recovery.

use bytes::Bytes;
use herald::domain::batch::{BatchStatus, BatchWebhooks};
use herald::domain::job_webhook::{JobSignatureFormat, JobWebhookMode, JobWebhooks};
use herald::domain::{BatchId, EndpointUri, FileId, ProjectId, SigningKind, WebhookId};
use herald::store::batches::{
    AddOutcome, CancelOutcome, Finish, FinishStep, NewBatch, NewBatchRequest, NewFile, RequestClaim, RequestCompletion,
    RequestJob, RequestUpdate, Validated, ValidationLease,
};
use herald::store::{DeliveryFilter, LeaseToken, PageRequest, Store};

use crate::support::*;

async fn file(
    store: &std::sync::Arc<dyn Store>,
    project: ProjectId,
    chunks: &[&[u8]],
    now: herald::domain::Timestamp,
) -> FileId {
    let id = FileId::generate();
    let new = NewFile {
        id,
        project_id: project,
        purpose: "batch".into(),
        filename: "in.jsonl".into(),
        now,
    };
    store.begin_file(new).await.unwrap();
    let mut bytes = 0;
    for (seq, chunk) in chunks.iter().enumerate() {
        bytes += chunk.len() as u64;
        store
            .append_file_chunk(id, u32::try_from(seq).unwrap(), Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    store.finish_file(id, bytes).await.unwrap();
    id
}

async fn batch(store: &std::sync::Arc<dyn Store>, project: ProjectId, now: herald::domain::Timestamp) -> BatchId {
    batch_with(store, project, now, None, Vec::new()).await.id
}

async fn batch_with(
    store: &std::sync::Arc<dyn Store>,
    project: ProjectId,
    now: herald::domain::Timestamp,
    webhooks: Option<BatchWebhooks>,
    webhook_uris: Vec<EndpointUri>,
) -> herald::domain::batch::Batch {
    let input = file(store, project, &[b"{}\n"], now).await;
    let id = BatchId::generate();
    store
        .create_batch(NewBatch {
            id,
            project_id: project,
            input_file_id: input,
            endpoint: "/v1/chat/completions".into(),
            completion_window: secs(3600),
            metadata: r#"{"k":"v"}"#.into(),
            now,
            webhooks,
            webhook_uris,
        })
        .await
        .unwrap()
}

fn requests(lines: std::ops::RangeInclusive<u64>) -> Vec<NewBatchRequest> {
    lines
        .map(|line| NewBatchRequest {
            line,
            custom_id: format!("c{line}"),
            upstream: "up".into(),
            body: format!(r#"{{"n":{line}}}"#).into_bytes(),
        })
        .collect()
}

async fn validate(store: &std::sync::Arc<dyn Store>, now: herald::domain::Timestamp, count: u64) -> ValidationLease {
    let lease = store
        .claim_validation(now, now.saturating_add(LEASE))
        .await
        .unwrap()
        .expect("a batch to validate");
    assert_eq!(
        store
            .add_batch_requests(lease.batch.id, lease.token, requests(1..=count))
            .await
            .unwrap(),
        AddOutcome::Added
    );
    assert!(
        store
            .finish_validation(lease.batch.id, lease.token, Validated::Valid { total: count }, now)
            .await
            .unwrap()
    );
    lease
}

fn claim(now: herald::domain::Timestamp, room: usize, per_batch: usize) -> RequestClaim {
    RequestClaim {
        now,
        lease_until: now.saturating_add(LEASE),
        room: vec![("up".into(), room)],
        limit: room,
        per_batch,
        max_batches: 64,
    }
}

fn done(job: &RequestJob, failed: bool) -> RequestCompletion {
    RequestCompletion {
        batch_id: job.batch_id,
        line: job.line,
        token: job.token,
        update: RequestUpdate::Done {
            line_bytes: format!("{{\"custom_id\":\"{}\"}}\n", job.custom_id).into_bytes(),
            failed,
        },
    }
}

/// Runs `finish_batch` step by step to the end; `None` if it had ended.
async fn finish(
    store: &std::sync::Arc<dyn Store>,
    id: BatchId,
    how: Finish,
    now: herald::domain::Timestamp,
) -> Option<herald::domain::batch::Batch> {
    let mut steps = 0;
    while let Some(step) = store.finish_batch(id, how, now).await.unwrap() {
        steps += 1;
        assert!(steps < 10_000, "finishing ends");
        if let FinishStep::Finished(batch) = step {
            return Some(*batch);
        }
    }
    None
}

contract_test!(
    fn files_are_chunked_scoped_and_invisible_until_finished(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let other = new_project(store, "other", now).await;
        let unfinished = FileId::generate();
        store
            .begin_file(NewFile { id: unfinished, project_id: project, purpose: "batch".into(), filename: "x".into(), now })
            .await
            .unwrap();
        store.append_file_chunk(unfinished, 0, Bytes::from_static(b"abc")).await.unwrap();
        assert!(store.get_file(project, unfinished).await.unwrap().is_none(), "an upload is invisible");
        store.discard_file(unfinished).await.unwrap();
        assert!(store.file_chunk(unfinished, 0).await.unwrap().is_none(), "discarding drops its chunks");

        let id = file(store, project, &[b"one ", b"two"], now).await;
        let record = store.get_file(project, id).await.unwrap().expect("finished");
        assert_eq!(record.bytes, 7);
        assert!(store.get_file(other, id).await.unwrap().is_none(), "scoped to its project");
        assert_eq!(store.file_chunk(id, 1).await.unwrap().as_deref(), Some(&b"two"[..]));
        assert!(store.file_chunk(id, 2).await.unwrap().is_none());
        let second = file(store, project, &[b"x"], now).await;
        let page = store.list_files(project, None, 1).await.unwrap();
        assert_eq!(page.items.iter().map(|f| f.id).collect::<Vec<_>>(), [second], "newest first");
        assert!(page.has_more);
        let rest = store.list_files(project, Some(second), 10).await.unwrap();
        assert_eq!(rest.items.iter().map(|f| f.id).collect::<Vec<_>>(), [id]);
        assert!(!rest.has_more);
        assert!(store.delete_file(project, id).await.unwrap());
        assert!(!store.delete_file(project, id).await.unwrap());
        assert!(store.file_chunk(id, 0).await.unwrap().is_none());
    }
);

contract_test!(
    fn requests_are_leased_fenced_and_shared_between_batches(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let first = batch(store, project, now).await;
        let second = batch(store, project, now).await;
        validate(store, now, 5).await;
        validate(store, now, 5).await;
        assert!(store.claim_validation(now, now.saturating_add(LEASE)).await.unwrap().is_none());

        let jobs = store.claim_requests(claim(now, 4, 2)).await.unwrap();
        let per_batch = |id| jobs.iter().filter(|j| j.batch_id == id).count();
        assert_eq!((per_batch(first), per_batch(second)), (2, 2), "fair: a bounded share each");
        assert_eq!(jobs.iter().filter(|j| j.batch_id == first).map(|j| j.line).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(jobs[0].endpoint, "/v1/chat/completions");
        assert_eq!(jobs[0].body.as_ref(), br#"{"n":1}"#);

        let forged = RequestCompletion { token: LeaseToken(jobs[0].token.0 ^ 1), ..done(&jobs[0], false) };
        assert_eq!(store.complete_requests(vec![forged]).await.unwrap(), [false], "fenced by the token");
        let retry = RequestCompletion {
            update: RequestUpdate::Retry { at: now.saturating_add(secs(10)) },
            ..done(&jobs[1], false)
        };
        let applied = store.complete_requests(vec![done(&jobs[0], false), retry]).await.unwrap();
        assert_eq!(applied, [true, true]);
        assert_eq!(store.complete_requests(vec![done(&jobs[0], false)]).await.unwrap(), [false], "once");

        let next = store.claim_requests(claim(now, 100, 100)).await.unwrap();
        let lines: Vec<(BatchId, u64)> = next.iter().map(|j| (j.batch_id, j.line)).collect();
        assert!(!lines.contains(&(first, 2)), "a retry waits for its time");
        assert_eq!(next.len(), 6, "everything else due: {lines:?}");
        let later = h.advance(secs(10));
        let retried = store.claim_requests(claim(later, 100, 100)).await.unwrap();
        assert_eq!(retried.iter().map(|j| (j.batch_id, j.line, j.attempts)).collect::<Vec<_>>(), [(first, 2, 1)]);

        // A lapsed lease is due again; the old holder's result is stale.
        let lapsed = h.advance(LEASE + secs(1));
        let again = store.claim_requests(claim(lapsed, 100, 100)).await.unwrap();
        assert_eq!(again.len(), 9, "every lease taken before `later` lapsed, and the retry's too");
        assert_eq!(store.complete_requests(vec![done(&next[0], false)]).await.unwrap(), [false]);
        let counts = store.get_batch(project, first).await.unwrap().unwrap().counts;
        assert_eq!((counts.total, counts.completed, counts.failed), (5, 1, 0));
    }
);

contract_test!(
    fn finishing_writes_results_in_input_order_and_publishes_with_the_status(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        webhook(store, project, &["batch.*"], now).await;
        let id = batch(store, project, now).await;
        validate(store, now, 4).await;
        let mut jobs = store.claim_requests(claim(now, 10, 10)).await.unwrap();
        jobs.reverse();
        let completions: Vec<RequestCompletion> = jobs.iter().map(|j| done(j, j.line == 3)).collect();
        store.complete_requests(completions).await.unwrap();
        assert_eq!(store.batches_to_finish(now).await.unwrap(), [(id, Finish::Completed)]);
        let finished = finish(store, id, Finish::Completed, now).await.expect("finished");
        assert_eq!(finished.status, BatchStatus::Completed);
        assert_eq!(finished.sequence, 2, "in_progress, then completed");
        assert_eq!((finished.counts.completed, finished.counts.failed), (3, 1));
        let output = store.file_chunk(finished.output_file_id.expect("output"), 0).await.unwrap().unwrap();
        assert_eq!(output.as_ref(), b"{\"custom_id\":\"c1\"}\n{\"custom_id\":\"c2\"}\n{\"custom_id\":\"c4\"}\n");
        let errors = store.file_chunk(finished.error_file_id.expect("errors"), 0).await.unwrap().unwrap();
        assert_eq!(errors.as_ref(), b"{\"custom_id\":\"c3\"}\n");
        assert!(finish(store, id, Finish::Completed, now).await.is_none(), "once");
        assert!(store.batches_to_finish(now).await.unwrap().is_empty());
        let deliveries = store
            .list_deliveries(project, DeliveryFilter::default(), PageRequest { size: 10, after: None })
            .await
            .unwrap();
        assert_eq!(deliveries.items.len(), 2, "batch.in_progress and batch.completed, one each");
        let (CancelOutcome::Finished(status),) = (store.cancel_batch(project, id, now).await.unwrap().unwrap(),) else {
            panic!("a finished batch cannot be cancelled");
        };
        assert_eq!(status, BatchStatus::Completed);
    }
);

contract_test!(
    fn validation_finds_duplicates_and_a_lost_lease_is_stale(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let id = batch(store, project, now).await;
        let lease = store.claim_validation(now, now.saturating_add(LEASE)).await.unwrap().unwrap();
        let mut rows = requests(1..=3);
        rows[2].custom_id = "c1".into();
        assert_eq!(
            store.add_batch_requests(id, lease.token, rows).await.unwrap(),
            AddOutcome::Duplicate { line: 3, custom_id: "c1".into() }
        );
        // The worker vanished: another takes the validation over and starts afresh.
        let later = h.advance(LEASE + secs(1));
        let takeover = store.claim_validation(later, later.saturating_add(LEASE)).await.unwrap().expect("re-leased");
        assert_eq!(store.add_batch_requests(id, lease.token, requests(4..=4)).await.unwrap(), AddOutcome::Stale);
        assert!(!store.finish_validation(id, lease.token, Validated::Valid { total: 1 }, later).await.unwrap());
        assert_eq!(store.add_batch_requests(id, takeover.token, requests(1..=2)).await.unwrap(), AddOutcome::Added);
        assert!(store.finish_validation(id, takeover.token, Validated::Valid { total: 2 }, later).await.unwrap());
        let jobs = store.claim_requests(claim(later, 10, 10)).await.unwrap();
        assert_eq!(jobs.len(), 2, "the lost run's rows were dropped");
    }
);

contract_test!(
    fn a_crash_ends_request_leases_and_cancel_waits_for_none_in_flight(h) {
        let now = h.now();
        let (project, id) = {
            let store = h.store();
            let project = new_project(store, "acme", now).await;
            let id = batch(store, project, now).await;
            validate(store, now, 3).await;
            assert_eq!(store.claim_requests(claim(now, 2, 10)).await.unwrap().len(), 2);
            (project, id)
        };
        h.restart_after_crash().await;
        let store = h.store();
        let resumed = store.claim_requests(claim(now, 10, 10)).await.unwrap();
        assert_eq!(resumed.len(), 3, "the dead process's leases ended at once");
        let Some(CancelOutcome::Cancelling(batch)) = store.cancel_batch(project, id, now).await.unwrap() else {
            panic!("a running batch can be cancelled");
        };
        assert_eq!(batch.status, BatchStatus::Cancelling);
        assert!(store.claim_requests(claim(now, 10, 10)).await.unwrap().is_empty(), "nothing new starts");
        assert!(store.batches_to_finish(now).await.unwrap().is_empty(), "three in flight");
        store.complete_requests(resumed.iter().map(|j| done(j, false)).collect()).await.unwrap();
        assert_eq!(store.batches_to_finish(now).await.unwrap(), [(id, Finish::Cancelled)]);
        let cancelled = finish(store, id, Finish::Cancelled, now).await.unwrap();
        assert_eq!(cancelled.counts.completed, 3);
    }
);

contract_test!(
    fn a_large_batch_finishes_in_bounded_steps_keeping_input_order(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let id = batch(store, project, now).await;
        let lease = store.claim_validation(now, now.saturating_add(LEASE)).await.unwrap().unwrap();
        for start in (1..=2500u64).step_by(500) {
            store.add_batch_requests(id, lease.token, requests(start..=start + 499)).await.unwrap();
        }
        store.finish_validation(id, lease.token, Validated::Valid { total: 2500 }, now).await.unwrap();
        loop {
            let jobs = store.claim_requests(claim(now, 1000, 1000)).await.unwrap();
            if jobs.is_empty() {
                break;
            }
            store.complete_requests(jobs.iter().map(|j| done(j, j.line % 10 == 0)).collect()).await.unwrap();
        }
        // Two steps, then the store "crashes": finishing resumes at its cursor.
        for _ in 0..2 {
            assert!(matches!(store.finish_batch(id, Finish::Completed, now).await.unwrap(), Some(FinishStep::More)));
        }
        let finalizing = store.get_batch(project, id).await.unwrap().unwrap();
        assert_eq!(finalizing.status, BatchStatus::Finalizing);
        assert!(store.cancel_batch(project, id, now).await.unwrap().is_some_and(|o| matches!(o, CancelOutcome::Finished(BatchStatus::Finalizing))));
        h.restart_after_crash().await;
        let store = h.store();
        assert_eq!(store.batches_to_finish(now).await.unwrap(), [(id, Finish::Completed)], "still under way");
        let finished = finish(store, id, Finish::Completed, now).await.unwrap();
        assert_eq!(finished.status, BatchStatus::Completed);
        let mut lines = Vec::new();
        for file in [finished.output_file_id.unwrap(), finished.error_file_id.unwrap()] {
            let mut seq = 0;
            let mut text = Vec::new();
            while let Some(chunk) = store.file_chunk(file, seq).await.unwrap() {
                text.extend_from_slice(&chunk);
                seq += 1;
            }
            let record = store.get_file(project, file).await.unwrap().unwrap();
            assert_eq!(record.bytes, text.len() as u64);
            lines.push(String::from_utf8(text).unwrap());
        }
        let ids = |text: &str| -> Vec<String> { text.lines().map(|l| l[14..l.len() - 2].to_owned()).collect() };
        let expected_output: Vec<String> = (1..=2500).filter(|n| n % 10 != 0).map(|n| format!("c{n}")).collect();
        let expected_errors: Vec<String> = (1..=2500).filter(|n| n % 10 == 0).map(|n| format!("c{n}")).collect();
        assert_eq!(ids(&lines[0]), expected_output);
        assert_eq!(ids(&lines[1]), expected_errors);
    }
);

contract_test!(
    fn abandoned_uploads_are_pruned_but_finishing_files_kept(h) {
        let store = h.store();
        let start = h.now();
        let project = new_project(store, "acme", start).await;
        let abandoned = FileId::generate();
        store
            .begin_file(NewFile { id: abandoned, project_id: project, purpose: "batch".into(), filename: "x".into(), now: start })
            .await
            .unwrap();
        store.append_file_chunk(abandoned, 0, Bytes::from_static(b"half")).await.unwrap();
        let id = batch(store, project, start).await;
        validate(store, start, 1500).await;
        let jobs = store.claim_requests(claim(start, 2000, 2000)).await.unwrap();
        assert_eq!(jobs.len(), 1500);
        store.complete_requests(jobs.iter().map(|j| done(j, false)).collect()).await.unwrap();
        // Finishing under way (more rows than one step takes): its result
        // files are unfinished uploads too.
        assert!(matches!(store.finish_batch(id, Finish::Completed, start).await.unwrap(), Some(FinishStep::More)));
        let later = h.advance(secs(3600));
        let progress = store.prune_abandoned_uploads(later).await.unwrap();
        assert!(progress.is_done());
        assert!(store.file_chunk(abandoned, 0).await.unwrap().is_none(), "the abandoned upload is gone");
        let finished = finish(store, id, Finish::Completed, later).await.expect("finishing resumed");
        let output = store.file_chunk(finished.output_file_id.unwrap(), 0).await.unwrap().unwrap();
        assert!(output.starts_with(b"{\"custom_id\":\"c1\"}\n{\"custom_id\":\"c2\"}\n"));
        assert!(store.get_file(project, finished.output_file_id.unwrap()).await.unwrap().is_some());
    }
);

/// A `webhook_config` to `hosts` (rows not attached yet) and its URIs.
fn job_config(
    mode: JobWebhookMode,
    format: JobSignatureFormat,
    hosts: &[&str],
) -> (Option<BatchWebhooks>, Vec<EndpointUri>) {
    let uris = hosts
        .iter()
        .map(|host| EndpointUri::parse(&format!("https://{host}/hook")).unwrap())
        .collect();
    let job = JobWebhooks {
        mode,
        format,
        webhook_ids: Vec::new(),
    };
    (
        Some(BatchWebhooks {
            job,
            user_metadata: Some(serde_json::json!({"ticket": 42})),
        }),
        uris,
    )
}

fn rows(batch: &herald::domain::batch::Batch) -> Vec<WebhookId> {
    let webhooks = batch.webhooks.as_ref().expect("webhooks");
    webhooks
        .job
        .webhook_ids
        .iter()
        .map(|id| WebhookId::parse(id).unwrap())
        .collect()
}

contract_test!(
    fn batch_webhooks_are_stored_attached_and_receive_the_status_events(h) {
        let store = h.store();
        let now = h.now();
        let project = new_project(store, "acme", now).await;
        let project_hook = webhook(store, project, &["batch.*"], now).await;
        let (config, uris) = job_config(JobWebhookMode::Override, JobSignatureFormat::Standard, &["b0.example", "b1.example"]);
        let overriding = batch_with(store, project, now, config, uris).await;
        let override_rows = rows(&overriding);
        assert_eq!(override_rows.len(), 2, "one hidden row per URI, attached at create");
        assert_eq!(store.get_batch(project, overriding.id).await.unwrap().unwrap(), overriding, "stored with its rows");
        let (config, uris) = job_config(JobWebhookMode::Additional, JobSignatureFormat::JwtRs256, &["b2.example"]);
        let additional = batch_with(store, project, now, config, uris).await;
        let additional_rows = rows(&additional);
        // Same URI and format as an earlier job: the row is shared.
        let (config, uris) = job_config(JobWebhookMode::Override, JobSignatureFormat::Standard, &["b0.example"]);
        assert_eq!(rows(&batch_with(store, project, now, config, uris).await), [override_rows[0]]);
        let listed = store.list_webhooks(project, PageRequest { size: 100, after: None }, now).await.unwrap();
        assert_eq!(listed.items.iter().map(|w| w.id).collect::<Vec<_>>(), [project_hook], "hidden rows are not listed");

        // Validating publishes batch.in_progress, in the same transaction, to the batch's recipients.
        let mut validated = Vec::new();
        for _ in 0..3 {
            validated.push(validate(store, now, 1).await.batch.id);
        }
        assert!(validated.contains(&overriding.id) && validated.contains(&additional.id));
        let deliveries = store
            .list_deliveries(project, DeliveryFilter::default(), PageRequest { size: 100, after: None })
            .await
            .unwrap()
            .items;
        let mut by_batch: std::collections::HashMap<String, Vec<WebhookId>> = Default::default();
        for delivery in &deliveries {
            let event = get_event(store, project, delivery.event_id).await;
            let envelope: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
            assert_eq!(envelope["type"], "batch.in_progress");
            assert_eq!(envelope["data"]["user_metadata"]["ticket"], 42, "{envelope}");
            by_batch.entry(envelope["data"]["id"].as_str().unwrap().to_owned()).or_default().push(delivery.webhook_id);
        }
        let sorted = |mut ids: Vec<WebhookId>| {
            ids.sort();
            ids
        };
        assert_eq!(
            sorted(by_batch.remove(&overriding.id.to_string()).unwrap()),
            sorted(override_rows.clone()),
            "override: only the batch's rows"
        );
        assert_eq!(
            sorted(by_batch.remove(&additional.id.to_string()).unwrap()),
            sorted(vec![additional_rows[0], project_hook]),
            "additional: the batch's row and the project's"
        );

        // The delivery engine gets them with Herald's signing kind, no key material.
        let jobs = claim_jobs(store, claim_all(now)).await;
        let job_row = jobs.iter().find(|j| j.endpoint.webhook_id == additional_rows[0]).expect("claimed");
        assert_eq!(job_row.endpoint.uri.as_str(), "https://b2.example/hook");
        assert!(job_row
            .endpoint
            .secrets
            .iter()
            .all(|s| s.kind == SigningKind::Job(JobSignatureFormat::JwtRs256) && s.material.is_err()));
    }
);
