//! [`BatchStore`] on PostgreSQL; the SQL is in [`super::batches`]. Status
//! changes publish their event inside the same transaction and tell the
//! dispatchers after the commit.

use async_trait::async_trait;
use bytes::Bytes;

use super::PostgresStore;
use super::batches;
use super::connect::store_error;
use crate::domain::batch::Batch;
use crate::domain::{BatchId, FileId, ProjectId, Timestamp};
use crate::store::batches::{
    AddOutcome, BatchStore, CancelOutcome, FileRecord, Finish, FinishStep, ListPage, NewBatch, NewBatchRequest,
    NewFile, RequestClaim, RequestCompletion, RequestJob, Validated, ValidationLease,
};
use crate::store::{LeaseToken, StoreResult};

/// Runs `$body` with `$tx` a transaction; commits if it succeeds.
macro_rules! transaction {
    ($self:ident, |$tx:ident| $body:expr) => {
        async {
            let mut client = $self.client().await?;
            let $tx = client.transaction().await.map_err(store_error)?;
            let out = $body;
            $tx.commit().await.map_err(store_error)?;
            Ok::<_, crate::store::StoreError>(out)
        }
        .await
    };
}

#[async_trait]
impl BatchStore for PostgresStore {
    async fn begin_file(&self, file: NewFile) -> StoreResult<()> {
        batches::begin_file(&self.client().await?, &file).await
    }

    async fn append_file_chunk(&self, id: FileId, seq: u32, data: Bytes) -> StoreResult<()> {
        batches::append_chunk(&self.client().await?, id, seq, &data).await
    }

    async fn finish_file(&self, id: FileId, bytes: u64) -> StoreResult<FileRecord> {
        batches::finish_file(&self.client().await?, id, bytes).await
    }

    async fn discard_file(&self, id: FileId) -> StoreResult<()> {
        transaction!(self, |tx| batches::discard_file(&tx, id).await?)
    }

    async fn list_files(
        &self,
        project: ProjectId,
        after: Option<FileId>,
        limit: u32,
    ) -> StoreResult<ListPage<FileRecord>> {
        batches::list_files(&self.client().await?, project, after, limit).await
    }

    async fn get_file(&self, project: ProjectId, id: FileId) -> StoreResult<Option<FileRecord>> {
        batches::get_file(&self.client().await?, project, id).await
    }

    async fn file_chunk(&self, id: FileId, seq: u32) -> StoreResult<Option<Bytes>> {
        batches::file_chunk(&self.client().await?, id, seq).await
    }

    async fn delete_file(&self, project: ProjectId, id: FileId) -> StoreResult<bool> {
        transaction!(self, |tx| batches::delete_file(&tx, project, id).await?)
    }

    async fn create_batch(&self, batch: NewBatch) -> StoreResult<Batch> {
        // One transaction: the batch and its per-job webhook rows.
        let created = transaction!(self, |tx| batches::create_batch(&tx, &batch).await?)?;
        self.batch_work.notify_one();
        Ok(created)
    }

    async fn get_batch(&self, project: ProjectId, id: BatchId) -> StoreResult<Option<Batch>> {
        batches::get_batch(&self.client().await?, project, id).await
    }

    async fn list_batches(
        &self,
        project: ProjectId,
        after: Option<BatchId>,
        limit: u32,
    ) -> StoreResult<ListPage<Batch>> {
        batches::list_batches(&self.client().await?, project, after, limit).await
    }

    async fn cancel_batch(
        &self,
        project: ProjectId,
        id: BatchId,
        now: Timestamp,
    ) -> StoreResult<Option<CancelOutcome>> {
        let outcome = transaction!(self, |tx| batches::cancel_batch(&tx, project, id, now).await?)?;
        self.batch_work.notify_one();
        Ok(outcome)
    }

    async fn claim_validation(&self, now: Timestamp, lease_until: Timestamp) -> StoreResult<Option<ValidationLease>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        transaction!(self, |tx| batches::claim_validation(
            &tx,
            now,
            lease_until,
            token,
            &self.node.id
        )
        .await?)
    }

    async fn add_batch_requests(
        &self,
        batch: BatchId,
        token: LeaseToken,
        requests: Vec<NewBatchRequest>,
    ) -> StoreResult<AddOutcome> {
        transaction!(self, |tx| batches::add_requests(&tx, batch, token, &requests).await?)
    }

    async fn finish_validation(
        &self,
        batch: BatchId,
        token: LeaseToken,
        result: Validated,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let fanned = transaction!(self, |tx| batches::finish_validation(&tx, batch, token, &result, now)
            .await?)?;
        self.batch_work.notify_one();
        match fanned {
            Some(fanned) => {
                self.publisher.after_commit(fanned).await;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn claim_requests(&self, claim: RequestClaim) -> StoreResult<Vec<RequestJob>> {
        let token = LeaseToken(rand::random::<i64>() & i64::MAX);
        transaction!(self, |tx| batches::claim_requests(&tx, &claim, token, &self.node.id)
            .await?)
    }

    async fn complete_requests(&self, completions: Vec<RequestCompletion>) -> StoreResult<Vec<bool>> {
        transaction!(self, |tx| batches::complete_requests(&tx, &completions).await?)
    }

    async fn batches_to_finish(&self, now: Timestamp) -> StoreResult<Vec<(BatchId, Finish)>> {
        batches::batches_to_finish(&self.client().await?, now).await
    }

    async fn finish_batch(&self, id: BatchId, finish: Finish, now: Timestamp) -> StoreResult<Option<FinishStep>> {
        let step = transaction!(self, |tx| batches::finish_batch(&tx, id, finish, now).await?)?;
        match step {
            Some((step, fanned)) => {
                self.publisher.after_commit(fanned).await;
                Ok(Some(step))
            }
            None => Ok(None),
        }
    }

    async fn publish_progress(&self, now: Timestamp, interval: std::time::Duration) -> StoreResult<usize> {
        let fanned = transaction!(self, |tx| batches::publish_progress(&tx, now, interval).await?)?;
        let published = fanned.len();
        for fanned in fanned {
            self.publisher.after_commit(fanned).await;
        }
        Ok(published)
    }

    async fn prune_abandoned_uploads(&self, before: Timestamp) -> StoreResult<crate::store::Progress> {
        transaction!(self, |tx| batches::prune_abandoned_uploads(&tx, before).await?)
    }

    fn batch_notifier(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.batch_work)
    }
}
