//! [`BatchStore`] on SQLite: writes go through the writer (group commit),
//! reads through the pool; the SQL is in [`super::batches`].

use async_trait::async_trait;
use bytes::Bytes;

use super::SqliteStore;
use super::batches;
use super::writer::Lane;
use crate::domain::batch::Batch;
use crate::domain::{BatchId, FileId, ProjectId, Timestamp};
use crate::store::batches::{
    AddOutcome, BatchStore, CancelOutcome, FileRecord, Finish, FinishStep, ListPage, NewBatch, NewBatchRequest,
    NewFile, RequestClaim, RequestCompletion, RequestJob, Validated, ValidationLease,
};
use crate::store::{LeaseToken, StoreResult};

/// The writer cost given to batch claims, completions and finishing: more
/// than a bulk job's threshold, so batch work commits in transactions of
/// its own, after the delivery queue's (the `Queue` lane goes first) and
/// alternating with publishes: a running batch never slows deliveries.
const BULK: usize = 64;

#[async_trait]
impl BatchStore for SqliteStore {
    async fn begin_file(&self, file: NewFile) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| batches::begin_file(conn, &file))
            .await
    }

    async fn append_file_chunk(&self, id: FileId, seq: u32, data: Bytes) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| batches::append_chunk(conn, id, seq, &data))
            .await
    }

    async fn finish_file(&self, id: FileId, bytes: u64) -> StoreResult<FileRecord> {
        self.writer
            .write(Lane::Api, 1, move |conn| batches::finish_file(conn, id, bytes))
            .await
    }

    async fn discard_file(&self, id: FileId) -> StoreResult<()> {
        self.writer
            .write(Lane::Api, 1, move |conn| batches::discard_file(conn, id))
            .await
    }

    async fn list_files(
        &self,
        project: ProjectId,
        after: Option<FileId>,
        limit: u32,
    ) -> StoreResult<ListPage<FileRecord>> {
        self.readers
            .read(move |conn| batches::list_files(conn, project, after, limit))
            .await
    }

    async fn get_file(&self, project: ProjectId, id: FileId) -> StoreResult<Option<FileRecord>> {
        self.readers
            .read(move |conn| batches::get_file(conn, project, id))
            .await
    }

    async fn file_chunk(&self, id: FileId, seq: u32) -> StoreResult<Option<Bytes>> {
        self.readers.read(move |conn| batches::file_chunk(conn, id, seq)).await
    }

    async fn delete_file(&self, project: ProjectId, id: FileId) -> StoreResult<bool> {
        self.writer
            .write(Lane::Api, 1, move |conn| batches::delete_file(conn, project, id))
            .await
    }

    async fn create_batch(&self, batch: NewBatch) -> StoreResult<Batch> {
        let weight = 1 + batch.webhook_uris.len();
        let created = self
            .writer
            .write(Lane::Api, weight, move |conn| batches::create_batch(conn, &batch))
            .await?;
        self.batch_work.notify_one();
        Ok(created)
    }

    async fn get_batch(&self, project: ProjectId, id: BatchId) -> StoreResult<Option<Batch>> {
        self.readers
            .read(move |conn| batches::get_batch(conn, project, id))
            .await
    }

    async fn list_batches(
        &self,
        project: ProjectId,
        after: Option<BatchId>,
        limit: u32,
    ) -> StoreResult<ListPage<Batch>> {
        self.readers
            .read(move |conn| batches::list_batches(conn, project, after, limit))
            .await
    }

    async fn cancel_batch(
        &self,
        project: ProjectId,
        id: BatchId,
        now: Timestamp,
    ) -> StoreResult<Option<CancelOutcome>> {
        let outcome = self
            .writer
            .write(Lane::Api, 1, move |conn| batches::cancel_batch(conn, project, id, now))
            .await?;
        self.batch_work.notify_one();
        Ok(outcome)
    }

    async fn claim_validation(&self, now: Timestamp, lease_until: Timestamp) -> StoreResult<Option<ValidationLease>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        self.writer
            .write(Lane::Api, 1, move |conn| {
                batches::claim_validation(conn, now, lease_until, token)
            })
            .await
    }

    async fn add_batch_requests(
        &self,
        batch: BatchId,
        token: LeaseToken,
        requests: Vec<NewBatchRequest>,
    ) -> StoreResult<AddOutcome> {
        let cost = requests.len();
        // Stored requests are due at once; `now` only orders them.
        let now = Timestamp::from_millis(0);
        self.writer
            .write(Lane::Api, cost, move |conn| {
                batches::add_requests(conn, batch, token, &requests, now)
            })
            .await
    }

    async fn finish_validation(
        &self,
        batch: BatchId,
        token: LeaseToken,
        result: Validated,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let finished = self
            .writer
            .write(Lane::Api, 1, move |conn| {
                batches::finish_validation(conn, batch, token, &result, now)
            })
            .await?;
        if finished == Some(true) {
            self.work.notify_one();
        }
        self.batch_work.notify_one();
        Ok(finished.is_some())
    }

    async fn claim_requests(&self, claim: RequestClaim) -> StoreResult<Vec<RequestJob>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        let cost: usize = claim.room.iter().map(|(_, room)| room).sum();
        self.writer
            .write(Lane::Api, cost.max(BULK), move |conn| {
                batches::claim_requests(conn, &claim, token)
            })
            .await
    }

    async fn complete_requests(&self, completions: Vec<RequestCompletion>) -> StoreResult<Vec<bool>> {
        let cost = completions.len();
        self.writer
            .write(Lane::Api, cost.max(BULK), move |conn| {
                batches::complete_requests(conn, &completions)
            })
            .await
    }

    async fn batches_to_finish(&self, now: Timestamp) -> StoreResult<Vec<(BatchId, Finish)>> {
        self.readers
            .read(move |conn| batches::batches_to_finish(conn, now))
            .await
    }

    async fn finish_batch(&self, id: BatchId, finish: Finish, now: Timestamp) -> StoreResult<Option<FinishStep>> {
        let step = self
            .writer
            .write(Lane::Api, BULK, move |conn| {
                batches::finish_batch(conn, id, finish, now)
            })
            .await?;
        Ok(step.map(|(step, delivered)| {
            if delivered {
                self.work.notify_one();
            }
            step
        }))
    }

    async fn publish_progress(&self, now: Timestamp, interval: std::time::Duration) -> StoreResult<usize> {
        let (published, delivered) = self
            .writer
            .write(Lane::Api, 1, move |conn| batches::publish_progress(conn, now, interval))
            .await?;
        if delivered {
            self.work.notify_one();
        }
        Ok(published)
    }

    async fn prune_abandoned_uploads(&self, before: Timestamp) -> StoreResult<crate::store::Progress> {
        self.writer
            .write(Lane::Api, BULK, move |conn| {
                batches::prune_abandoned_uploads(conn, before)
            })
            .await
    }

    fn batch_notifier(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.batch_work)
    }
}
