//! A small pool of read-only connections. In WAL mode readers see the last
//! committed state and never block the writer (nor it them).

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::store::{StoreError, StoreResult};

pub(super) struct ReadPool {
    /// Idle connections; a permit from `available` guarantees one is here.
    idle: Mutex<Vec<Connection>>,
    available: Semaphore,
}

impl ReadPool {
    pub(super) fn new(connections: Vec<Connection>) -> Arc<Self> {
        let count = connections.len();
        Arc::new(Self {
            idle: Mutex::new(connections),
            available: Semaphore::new(count),
        })
    }

    /// Runs `work` on a pooled connection in the blocking thread pool.
    pub(super) async fn read<T, F>(self: &Arc<Self>, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let permit = self.available.acquire().await.map_err(|_| closed())?;
        let conn = self.idle.lock().map_err(|_| closed())?.pop().ok_or_else(closed)?;
        let pool = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            // Catch a panic so the connection goes back to the pool either way.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&conn)));
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
            result.unwrap_or_else(|_| Err(StoreError::Corrupt("a read operation panicked".into())))
        })
        .await;
        drop(permit);
        joined.map_err(|_| closed())?
    }

    pub(super) fn close(&self) {
        self.available.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the database is closed".into())
}
