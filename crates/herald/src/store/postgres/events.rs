//! Publishing (with fan-out) and reading events back.
//!
//! Publishes are group-committed like the SQLite writer's: concurrent
//! requests queue on a channel, and a few batch tasks each take whatever
//! is waiting and commit it as one transaction of set-based statements
//! (about eight round trips per batch whatever its size), then answer
//! every caller. A caller's `Ok` means its transaction committed with
//! `synchronous_commit = on`.
//!
//! Failure policy: a batch that loses a race (deadlock, serialization, an
//! idempotency key inserted by another node meanwhile) is run again; a
//! batch that fails otherwise is retried one request per transaction, so
//! one bad request cannot fail its neighbours; a lost connection fails the
//! callers with `Unavailable` (503: nothing was acknowledged).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::connect::{is_retryable, pool_error, store_error};
use super::hints;
use super::queue::attempt_from_row;
use super::rows::{count, get, parsed, timestamp, timestamp_opt};
use super::webhooks::enabled_subscribers;
use crate::domain::fanout::{self, Subscriber};
use crate::domain::job_webhook::JobWebhooks;
use crate::domain::{DeliveryId, EventId, EventType, ProjectId, Timestamp, WebhookId};
use crate::store::codec::{delivery_state, next_attempt_time};
use crate::store::{DeliveryView, EventDetail, Progress, PublishOutcome, PublishRequest, StoreError, StoreResult};

/// Batches of small requests committed at once: each holds one pooled
/// connection.
const CONCURRENT_BATCHES: usize = 3;
/// Batches of bulk requests committed at once.
const BULK_CONCURRENT_BATCHES: usize = 1;
/// Events in one batch at most (its requests are never split).
const BATCH_EVENTS: usize = 2048;
/// Requests waiting before callers feel back-pressure.
const QUEUE_CAPACITY: usize = 8192;
/// Runs of a batch that keeps losing races before it is split up.
const RACE_RETRIES: usize = 3;

struct Pending {
    request: PublishRequest,
    answer: oneshot::Sender<StoreResult<PublishOutcome>>,
}

/// A request of more events than this is bulk: it goes through its own
/// batch tasks, so one tenant's large batches never hold the connections
/// and transactions that single publishes use.
const BULK_EVENTS: usize = 16;

/// The publishing side of the store: hands requests to the batch tasks,
/// small and bulk requests each to their own.
pub(super) struct Publisher {
    small: mpsc::Sender<Pending>,
    bulk: mpsc::Sender<Pending>,
    /// For [`Publisher::after_commit`].
    pools: Pools,
    work: Arc<Notify>,
}

/// Deliveries a [`publish_within`] wrote: the webhooks' hints to lower
/// after the caller's commit. Hand it to [`Publisher::after_commit`];
/// dropping it only delays the deliveries until the next repair sweep or
/// idle poll, never loses them.
#[must_use = "pass to Publisher::after_commit once the transaction has committed"]
#[derive(Debug, Default)]
pub(super) struct Fanned {
    due: HashMap<WebhookId, i64>,
}

/// Publishes one request inside the caller's transaction, so that a state
/// change (a job's status, a webhook's auto-disable) and the event that
/// announces it commit together or not at all. Fan-out, limits and
/// idempotency are the same as [`Publisher::publish`]'s.
#[allow(dead_code)] // the seam job stores call (operations use `publish_within_to`)
pub(super) async fn publish_within(
    tx: &deadpool_postgres::Transaction<'_>,
    request: &PublishRequest,
) -> StoreResult<(PublishOutcome, Fanned)> {
    publish_within_to(tx, request, None).await
}

/// [`publish_within`] of a job's event: to the job's own webhooks and, as
/// its mode says, the project's (`JobWebhooks::recipients`).
pub(super) async fn publish_within_to(
    tx: &deadpool_postgres::Transaction<'_>,
    request: &PublishRequest,
    job: Option<&JobWebhooks>,
) -> StoreResult<(PublishOutcome, Fanned)> {
    match write_set(tx, &[request], job).await {
        Ok((mut outcomes, due)) => {
            let outcome = outcomes.pop().unwrap_or_else(|| Err(closed()))?;
            Ok((outcome, Fanned { due }))
        }
        Err(Attempt::Raced) => Err(StoreError::Unavailable(
            "the write conflicted with a concurrent transaction; retry".into(),
        )),
        Err(Attempt::Unreachable(error) | Attempt::Failed(error)) => Err(error),
    }
}

impl Publisher {
    pub(super) fn spawn(pool: Pool, hint_pool: Pool, waker: hints::Waker, work: Arc<Notify>) -> Self {
        let (small, small_jobs) = mpsc::channel(QUEUE_CAPACITY);
        let (bulk, bulk_jobs) = mpsc::channel(QUEUE_CAPACITY);
        let pools = Pools {
            data: pool,
            hints: hint_pool,
            waker,
        };
        tokio::spawn(run(pools.clone(), small_jobs, Arc::clone(&work), CONCURRENT_BATCHES));
        tokio::spawn(run(
            pools.clone(),
            bulk_jobs,
            Arc::clone(&work),
            BULK_CONCURRENT_BATCHES,
        ));
        Self {
            small,
            bulk,
            pools,
            work,
        }
    }

    /// Tells the dispatchers (this node's and, by `NOTIFY`, every other
    /// node's) about deliveries that [`publish_within`] wrote, once the
    /// caller's transaction has committed.
    pub(super) async fn after_commit(&self, fanned: Fanned) {
        if fanned.due.is_empty() {
            return;
        }
        hints::after_publish(&self.pools.hints, &self.pools.waker, &fanned.due).await;
        self.work.notify_one();
    }

    pub(super) async fn publish(&self, request: PublishRequest) -> StoreResult<PublishOutcome> {
        let (answer, answered) = oneshot::channel();
        let lane = if request.events.len() > BULK_EVENTS {
            &self.bulk
        } else {
            &self.small
        };
        lane.send(Pending { request, answer }).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the store is closing".into())
}

/// Takes a permit first, then whatever waits: while every batch task is
/// busy, requests pile up into a bigger next batch.
/// The data pool, and the hint pool for after commits.
#[derive(Clone)]
struct Pools {
    data: Pool,
    hints: Pool,
    waker: hints::Waker,
}

async fn run(pools: Pools, mut receiver: mpsc::Receiver<Pending>, work: Arc<Notify>, concurrent: usize) {
    let permits = Arc::new(Semaphore::new(concurrent));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let Some(first) = receiver.recv().await else { return };
        let mut events = first.request.events.len();
        let mut batch = vec![first];
        while events < BATCH_EVENTS {
            match receiver.try_recv() {
                Ok(next) => {
                    events += next.request.events.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let (pools, work) = (pools.clone(), Arc::clone(&work));
        tokio::spawn(async move {
            commit(&pools, batch, &work).await;
            drop(permit);
        });
    }
}

async fn commit(pools: &Pools, batch: Vec<Pending>, work: &Notify) {
    metrics::histogram!("herald_store_commit_batch_size").record(batch.len() as f64);
    // A key used twice in one batch: the later uses go after the commit,
    // and find the first's record.
    let mut seen = HashSet::new();
    let (first, later): (Vec<Pending>, Vec<Pending>) =
        batch
            .into_iter()
            .partition(|pending| match &pending.request.idempotency {
                Some(key) => seen.insert((pending.request.project_id, key.key.clone())),
                None => true,
            });
    commit_together(pools, first, work).await;
    for pending in later {
        commit_together(pools, vec![pending], work).await;
    }
}

async fn commit_together(pools: &Pools, batch: Vec<Pending>, work: &Notify) {
    let (pool, hint_pool) = (&pools.data, &pools.hints);
    let requests: Vec<&PublishRequest> = batch.iter().map(|p| &p.request).collect();
    let mut result = Err(Attempt::Failed(closed()));
    for _ in 0..RACE_RETRIES {
        result = publish_set(pool, &requests).await;
        if !matches!(result, Err(Attempt::Raced)) {
            break;
        }
    }
    match result {
        Ok((outcomes, due)) => {
            hints::after_publish(hint_pool, &pools.waker, &due).await;
            if outcomes
                .iter()
                .any(|o| matches!(o, Ok(PublishOutcome::Published { deliveries }) if *deliveries > 0usize))
            {
                work.notify_one();
            }
            for (pending, outcome) in batch.into_iter().zip(outcomes) {
                let _ = pending.answer.send(outcome);
            }
        }
        Err(Attempt::Unreachable(error)) => {
            for pending in batch {
                let _ = pending.answer.send(Err(error.clone()));
            }
        }
        Err(Attempt::Failed(error)) if batch.len() == 1 => {
            for pending in batch {
                let _ = pending.answer.send(Err(error.clone()));
            }
        }
        Err(Attempt::Raced) if batch.len() == 1 => {
            for pending in batch {
                let _ = pending.answer.send(Err(StoreError::Unavailable(
                    "the publish kept conflicting with concurrent writes; retry with the same Idempotency-Key".into(),
                )));
            }
        }
        Err(_) => {
            // One request per transaction, so a bad one fails alone.
            for pending in batch {
                Box::pin(commit_together(pools, vec![pending], work)).await;
            }
        }
    }
}

enum Attempt {
    /// Lost a race with another transaction: run it again.
    Raced,
    /// The server cannot be reached: every request in the batch fails alike.
    Unreachable(StoreError),
    /// A statement failed: perhaps because of one request.
    Failed(StoreError),
}

impl From<StoreError> for Attempt {
    fn from(error: StoreError) -> Self {
        Self::Failed(error)
    }
}

fn classify(error: tokio_postgres::Error) -> Attempt {
    if is_retryable(&error) {
        Attempt::Raced
    } else if error.as_db_error().is_none() {
        Attempt::Unreachable(store_error(error))
    } else {
        Attempt::Failed(store_error(error))
    }
}

/// One transaction for every request in `requests`; one outcome each.
/// Also returns the hints to lower after the commit (see `hints`).
#[allow(clippy::type_complexity)]
async fn publish_set(
    pool: &Pool,
    requests: &[&PublishRequest],
) -> Result<(Vec<StoreResult<PublishOutcome>>, HashMap<WebhookId, i64>), Attempt> {
    let mut client = pool.get().await.map_err(|e| Attempt::Unreachable(pool_error(e)))?;
    let tx = client.transaction().await.map_err(classify)?;
    let (outcomes, due) = write_set(&tx, requests, None).await?;
    // The NOTIFY that wakes other nodes goes out after the commit, with
    // the hints (see `hints::after_publish`): a notifying transaction
    // takes a cluster-wide lock at commit, which would serialise the
    // durable publish commits.
    tx.commit().await.map_err(classify)?;
    Ok((outcomes, due))
}

/// Writes every request in `requests` in the caller's transaction; one
/// outcome each, and the hints to lower after the commit.
#[allow(clippy::type_complexity)]
async fn write_set(
    tx: &deadpool_postgres::Transaction<'_>,
    requests: &[&PublishRequest],
    job: Option<&JobWebhooks>,
) -> Result<(Vec<StoreResult<PublishOutcome>>, HashMap<WebhookId, i64>), Attempt> {
    // Idempotency keys seen before answer without writing.
    let mut outcomes: Vec<Option<StoreResult<PublishOutcome>>> = vec![None; requests.len()];
    let keyed: Vec<(usize, String, &crate::store::IdempotencyRecord)> = requests
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.idempotency.as_ref().map(|k| (i, r.project_id.to_string(), k)))
        .collect();
    if !keyed.is_empty() {
        let projects: Vec<&str> = keyed.iter().map(|(_, p, _)| p.as_str()).collect();
        let keys: Vec<&str> = keyed.iter().map(|(_, _, k)| k.key.as_str()).collect();
        let rows = tx
            .query(
                "SELECT i.project_id, i.key, i.request_hash, i.response FROM idempotency_keys i
                 JOIN UNNEST($1::text[], $2::text[]) AS u(project_id, key) USING (project_id, key)",
                &[&projects, &keys],
            )
            .await
            .map_err(classify)?;
        let mut previous: HashMap<(String, String), (Vec<u8>, Vec<u8>)> = HashMap::new();
        for row in &rows {
            previous.insert((get(row, 0)?, get(row, 1)?), (get(row, 2)?, get(row, 3)?));
        }
        for (index, project, key) in &keyed {
            if let Some((hash, response)) = previous.remove(&(project.clone(), key.key.clone())) {
                outcomes[*index] = Some(if hash == key.request_hash {
                    Ok(PublishOutcome::Replayed { response })
                } else {
                    Err(StoreError::IdempotencyConflict)
                });
            }
        }
    }

    let writing: Vec<usize> = (0..requests.len()).filter(|i| outcomes[*i].is_none()).collect();
    let mut projects: Vec<String> = writing.iter().map(|i| requests[*i].project_id.to_string()).collect();
    projects.sort();
    projects.dedup();
    let mut subscribers: HashMap<ProjectId, Vec<Subscriber>> = HashMap::new();
    for (project, subscriber) in enabled_subscribers(tx, &projects).await? {
        subscribers.entry(project).or_default().push(subscriber);
    }
    // A job's event (one request): its own webhooks, and the project's as
    // its mode says.
    if let (Some(job), [request]) = (job, requests) {
        let project = subscribers.remove(&request.project_id).unwrap_or_default();
        subscribers.insert(request.project_id, job.recipients(project));
    }

    let mut events = EventColumns::default();
    let mut deliveries = DeliveryColumns::default();
    let mut due: HashMap<WebhookId, i64> = HashMap::new();
    let none = Vec::new();
    for &index in &writing {
        let request = requests[index];
        let project = request.project_id.to_string();
        let subscribers = subscribers.get(&request.project_id).unwrap_or(&none);
        let count = fanout::delivery_count(request.events.iter().map(|e| &e.event_type), subscribers);
        if let Err(message) = fanout::check_limit(count, request.max_deliveries) {
            outcomes[index] = Some(Err(StoreError::LimitExceeded(message)));
            continue;
        }
        let now = request.now.as_millis();
        let mut fanned = 0;
        for event in &request.events {
            let event_id = event.id.to_string();
            for webhook in fanout::recipients(&event.event_type, subscribers) {
                deliveries.push(&event_id, webhook, &project, event.timestamp.as_millis(), now);
                due.entry(webhook).and_modify(|at| *at = (*at).min(now)).or_insert(now);
                fanned += 1;
            }
            events.push(
                event_id,
                &project,
                event.event_type.as_str(),
                event.timestamp.as_millis(),
                &event.payload,
            );
        }
        outcomes[index] = Some(Ok(PublishOutcome::Published { deliveries: fanned }));
    }

    // Both inserts go out together (pipelined): one round trip, and the
    // server runs them in order (deliveries reference events).
    let insert_events = tx
        .prepare_cached(
            "INSERT INTO events (id, project_id, type, timestamp, payload)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[])",
        )
        .await
        .map_err(classify)?;
    let insert_deliveries = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, webhook_id, project_id, event_time, state, next_attempt_at, create_time)
             SELECT d.id, d.event_id, d.webhook_id, d.project_id, d.event_time, 'pending', d.at, d.at
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[])
                  AS d(id, event_id, webhook_id, project_id, event_time, at)",
        )
        .await
        .map_err(classify)?;
    let payloads: Vec<&[u8]> = events.payloads.iter().map(|p| &p[..]).collect();
    let events_inserted = async {
        if events.ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_events,
            &[
                &events.ids,
                &events.projects,
                &events.types,
                &events.timestamps,
                &payloads,
            ],
        )
        .await
    };
    let deliveries_inserted = async {
        if deliveries.ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            &insert_deliveries,
            &[
                &deliveries.ids,
                &deliveries.events,
                &deliveries.webhooks,
                &deliveries.projects,
                &deliveries.event_times,
                &deliveries.due,
            ],
        )
        .await
    };
    futures_util::try_join!(events_inserted, deliveries_inserted).map_err(classify)?;
    let new_keys: Vec<&(usize, String, &crate::store::IdempotencyRecord)> = keyed
        .iter()
        .filter(|(i, _, _)| matches!(outcomes[*i], Some(Ok(PublishOutcome::Published { .. }))))
        .collect();
    if !new_keys.is_empty() {
        let projects: Vec<&str> = new_keys.iter().map(|(_, p, _)| p.as_str()).collect();
        let keys: Vec<&str> = new_keys.iter().map(|(_, _, k)| k.key.as_str()).collect();
        let hashes: Vec<&[u8]> = new_keys.iter().map(|(_, _, k)| &k.request_hash[..]).collect();
        let responses: Vec<&[u8]> = new_keys.iter().map(|(_, _, k)| k.response.as_slice()).collect();
        let times: Vec<i64> = new_keys.iter().map(|(i, _, _)| requests[*i].now.as_millis()).collect();
        let inserted = tx
            .execute(
                "INSERT INTO idempotency_keys (project_id, key, request_hash, response, create_time)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::int8[])
                 ON CONFLICT (project_id, key) DO NOTHING",
                &[&projects, &keys, &hashes, &responses, &times],
            )
            .await
            .map_err(classify)?;
        if inserted < new_keys.len() as u64 {
            // Another node committed one of these keys meanwhile: start
            // over, and the check above will answer it.
            return Err(Attempt::Raced);
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(closed())))
        .collect();
    Ok((outcomes, due))
}

#[derive(Default)]
struct EventColumns {
    ids: Vec<String>,
    projects: Vec<String>,
    types: Vec<String>,
    timestamps: Vec<i64>,
    payloads: Vec<Bytes>,
}

impl EventColumns {
    fn push(&mut self, id: String, project: &str, event_type: &str, timestamp: i64, payload: &Bytes) {
        self.ids.push(id);
        self.projects.push(project.to_owned());
        self.types.push(event_type.to_owned());
        self.timestamps.push(timestamp);
        self.payloads.push(payload.clone());
    }
}

#[derive(Default)]
struct DeliveryColumns {
    ids: Vec<String>,
    events: Vec<String>,
    webhooks: Vec<String>,
    projects: Vec<String>,
    event_times: Vec<i64>,
    due: Vec<i64>,
}

impl DeliveryColumns {
    fn push(&mut self, event: &str, webhook: WebhookId, project: &str, event_time: i64, due: i64) {
        self.ids.push(DeliveryId::generate().to_string());
        self.events.push(event.to_owned());
        self.webhooks.push(webhook.to_string());
        self.projects.push(project.to_owned());
        self.event_times.push(event_time);
        self.due.push(due);
    }
}

pub(super) async fn get_event(
    client: &impl GenericClient,
    project: ProjectId,
    id: EventId,
) -> StoreResult<Option<EventDetail>> {
    let row = client
        .query_opt(
            "SELECT id, type, timestamp, payload FROM events WHERE id = $1 AND project_id = $2",
            &[&id.to_string(), &project.to_string()],
        )
        .await
        .map_err(store_error)?;
    let Some(row) = row else { return Ok(None) };
    let mut event = EventDetail {
        id: parsed(&row, 0, "event id", EventId::parse)?,
        event_type: parsed(&row, 1, "event type", |s| EventType::parse(s).ok())?,
        timestamp: timestamp(&row, 2)?,
        payload: Bytes::from(get::<Vec<u8>>(&row, 3)?),
        deliveries: Vec::new(),
    };
    let rows = client
        .query(
            "SELECT id, webhook_id, state, attempt_count, next_attempt_at, last_error FROM deliveries
             WHERE event_id = $1 ORDER BY id",
            &[&id.to_string()],
        )
        .await
        .map_err(store_error)?;
    // Every delivery's last attempt in one round trip.
    let last_attempts = client
        .query(
            "SELECT DISTINCT ON (a.delivery_id) a.attempt_number, a.start_time, a.duration_ms, a.status_code,
                    a.response_excerpt, a.error_kind, a.error_message, a.delivery_id
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE d.event_id = $1 ORDER BY a.delivery_id, a.attempt_number DESC",
            &[&id.to_string()],
        )
        .await
        .map_err(store_error)?;
    let mut last: HashMap<String, crate::domain::AttemptRecord> = HashMap::new();
    for row in &last_attempts {
        last.insert(get(row, 7)?, attempt_from_row(row)?);
    }
    for row in &rows {
        let stored: String = get(row, 2)?;
        let (state, in_flight) = delivery_state(&stored);
        let next_attempt_time = next_attempt_time(state, in_flight, timestamp_opt(row, 4)?);
        let delivery_id: DeliveryId = parsed(row, 0, "delivery id", DeliveryId::parse)?;
        event.deliveries.push(DeliveryView {
            id: delivery_id,
            webhook_id: parsed(row, 1, "webhook id", WebhookId::parse)?,
            state,
            attempt_count: count(row, 3)?,
            next_attempt_time,
            last_attempt: last.remove(&delivery_id.to_string()),
            last_error: get(row, 5)?,
        });
    }
    Ok(Some(event))
}

/// Idempotency records deleted per call.
const PRUNE_CHUNK: i64 = 10_000;

pub(super) async fn prune_idempotency_keys(client: &impl GenericClient, before: Timestamp) -> StoreResult<Progress> {
    let deleted = client
        .execute(
            "DELETE FROM idempotency_keys WHERE (project_id, key) IN
                (SELECT project_id, key FROM idempotency_keys WHERE create_time < $1 LIMIT $2)",
            &[&before.as_millis(), &PRUNE_CHUNK],
        )
        .await
        .map_err(store_error)?;
    Ok(if deleted < PRUNE_CHUNK.unsigned_abs() {
        Progress::Done(deleted)
    } else {
        Progress::More(deleted)
    })
}
