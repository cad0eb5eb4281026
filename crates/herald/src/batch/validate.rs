//! Validation, a kind of leased work: a `validating` batch is leased, its
//! input file streamed chunk by chunk (never whole in memory), each line
//! checked (`domain::batch::parse_line`) and routed to the upstream that
//! serves its model, and the valid requests stored in pieces. The batch
//! then becomes `in_progress` or `failed` (with `errors` naming lines and
//! fields), its event in the same transaction.
//!
//! Duplicate `custom_id`s are found by the store's unique index, so the
//! memory used does not grow with the batch. A validation whose worker
//! dies is leased again after `batches.lease` and starts over (the store
//! drops what the lost run had stored).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::upstream::Upstreams;
use crate::clock::SharedClock;
use crate::domain::batch::{self, BatchError, LineLimits, MAX_VALIDATION_ERRORS};
use crate::store::batches::{AddOutcome, NewBatchRequest, Validated, ValidationLease};
use crate::store::{Store, StoreResult};
use crate::work::WorkKind;

/// Requests stored per write.
const PIECE: usize = 1000;

pub struct Validation {
    pub(super) store: Arc<dyn Store>,
    pub(super) upstreams: Arc<Upstreams>,
    pub(super) clock: SharedClock,
    pub(super) lease: Duration,
    pub(super) limits: LineLimits,
    pub(super) max_requests: u64,
    pub(super) notify: Arc<Notify>,
    /// Told when a batch becomes `in_progress`.
    pub(super) requests_ready: Arc<Notify>,
}

#[async_trait]
impl WorkKind for Validation {
    type Job = ValidationLease;
    type Outcome = ();

    fn name(&self) -> &'static str {
        "batch_validation"
    }

    async fn claim(&self, room: usize) -> StoreResult<Vec<ValidationLease>> {
        let mut leases = Vec::new();
        while leases.len() < room {
            let now = self.clock.now();
            match self.store.claim_validation(now, now.saturating_add(self.lease)).await? {
                Some(lease) => leases.push(lease),
                None => break,
            }
        }
        Ok(leases)
    }

    async fn execute(&self, lease: ValidationLease) {
        let id = lease.batch.id;
        match self.validate(lease).await {
            Ok(true) => self.requests_ready.notify_one(),
            Ok(false) => tracing::info!(batch = %id, "validation lease lost; another worker validates this batch"),
            Err(error) => tracing::warn!(batch = %id, %error, "validation failed; it will be retried after the lease"),
        }
    }

    async fn complete(&self, _outcomes: Vec<()>) -> StoreResult<()> {
        Ok(())
    }

    fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }
}

/// Where the line being read stands.
struct Reader {
    line: u64,
    pending: Vec<u8>,
    oversize: bool,
}

impl Validation {
    /// Returns whether this worker still held the lease at the end.
    async fn validate(&self, lease: ValidationLease) -> StoreResult<bool> {
        let batch = &lease.batch;
        let mut run = Run {
            validation: self,
            lease: &lease,
            errors: Vec::new(),
            piece: Vec::with_capacity(PIECE),
            total: 0,
            stale: false,
            stopped: false,
        };
        if self.store.get_file(batch.project_id, batch.input_file_id).await?.is_none() {
            run.errors.push(BatchError::new(
                "file_not_found",
                format!("input file {} no longer exists", batch.input_file_id),
                Some("input_file_id"),
                None,
            ));
        }
        let mut reader = Reader {
            line: 0,
            pending: Vec::new(),
            oversize: false,
        };
        let mut seq = 0;
        while !run.should_stop() {
            let Some(chunk) = self.store.file_chunk(batch.input_file_id, seq).await? else {
                break;
            };
            seq += 1;
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() && !run.should_stop() {
                match rest.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        self.append(&mut reader, &rest[..end]);
                        run.end_line(&mut reader).await?;
                        rest = &rest[end + 1..];
                    }
                    None => {
                        self.append(&mut reader, rest);
                        rest = &[];
                    }
                }
            }
        }
        if (!reader.pending.is_empty() || reader.oversize) && !run.should_stop() {
            run.end_line(&mut reader).await?;
        }
        run.flush().await?;
        if run.stale {
            return Ok(false);
        }
        if run.total == 0 && run.errors.is_empty() {
            run.errors.push(BatchError::new("empty_file", "the input file holds no request", Some("input_file_id"), None));
        }
        let result = if run.errors.is_empty() {
            Validated::Valid { total: run.total }
        } else {
            Validated::Invalid(run.errors)
        };
        self.store
            .finish_validation(batch.id, lease.token, result, self.clock.now())
            .await
    }

    fn append(&self, reader: &mut Reader, part: &[u8]) {
        if reader.oversize {
            return;
        }
        if reader.pending.len() + part.len() > self.limits.max_line_bytes {
            reader.oversize = true;
            reader.pending = Vec::new();
        } else {
            reader.pending.extend_from_slice(part);
        }
    }
}

struct Run<'a> {
    validation: &'a Validation,
    lease: &'a ValidationLease,
    errors: Vec<BatchError>,
    piece: Vec<NewBatchRequest>,
    total: u64,
    stale: bool,
    /// Reading ended early (too many requests).
    stopped: bool,
}

impl Run<'_> {
    async fn end_line(&mut self, reader: &mut Reader) -> StoreResult<()> {
        reader.line += 1;
        let line = reader.line;
        let text = std::mem::take(&mut reader.pending);
        let oversize = std::mem::replace(&mut reader.oversize, false);
        let v = self.validation;
        if oversize {
            self.errors.push(BatchError::new(
                "request_too_large",
                format!("the line is longer than {} bytes", v.limits.max_line_bytes),
                None,
                Some(line),
            ));
            return Ok(());
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let parsed = match batch::parse_line(line, &text, &self.lease.batch.endpoint, v.limits) {
            Ok(parsed) => parsed,
            Err(error) => {
                self.errors.push(error);
                return Ok(());
            }
        };
        let Some(upstream) = v.upstreams.for_model(&parsed.model) else {
            self.errors.push(BatchError::new(
                "model_not_found",
                format!("no upstream serves model {:?}", parsed.model),
                Some("body.model"),
                Some(line),
            ));
            return Ok(());
        };
        self.total += 1;
        if self.total > v.max_requests {
            self.errors.push(BatchError::new(
                "too_many_requests",
                format!("a batch holds at most {} requests", v.max_requests),
                None,
                Some(line),
            ));
            // Nothing after this line can make the batch valid.
            self.stopped = true;
            return Ok(());
        }
        self.piece.push(NewBatchRequest {
            line,
            custom_id: parsed.custom_id,
            upstream: upstream.name.clone(),
            body: parsed.body,
        });
        if self.piece.len() >= PIECE {
            self.flush().await?;
        }
        Ok(())
    }

    fn should_stop(&self) -> bool {
        self.stale || self.stopped || self.errors.len() >= MAX_VALIDATION_ERRORS
    }

    async fn flush(&mut self) -> StoreResult<()> {
        if self.piece.is_empty() || !self.errors.is_empty() || self.stale {
            self.piece.clear();
            return Ok(());
        }
        let piece = std::mem::take(&mut self.piece);
        let v = self.validation;
        match v.store.add_batch_requests(self.lease.batch.id, self.lease.token, piece).await? {
            AddOutcome::Added => {}
            AddOutcome::Duplicate { line, custom_id } => self.errors.push(BatchError::new(
                "duplicate_custom_id",
                format!("custom_id {custom_id:?} is used by an earlier line"),
                Some("custom_id"),
                Some(line),
            )),
            AddOutcome::Stale => self.stale = true,
        }
        Ok(())
    }
}
