//! The `:wait` registry: long-polls wait in memory, one `Notify` per
//! watched operation, and are woken by a committed change of that
//! operation (on this node by the store itself; on a shared database, by
//! `NOTIFY` from the node that made it). A waiter reads the store once per
//! wake-up, never on a timer: thousands of waiters cost no queries while
//! nothing changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::domain::OperationId;

#[derive(Debug, Default)]
pub struct OperationWaiters {
    slots: Mutex<HashMap<OperationId, Arc<Notify>>>,
}

/// A waiter's registration; dropping it forgets the slot when it was the
/// last one watching that operation.
pub struct WaitGuard {
    registry: Arc<OperationWaiters>,
    id: OperationId,
    notify: Arc<Notify>,
}

impl WaitGuard {
    /// Wakes on the next change of the operation. Create (and `enable`)
    /// the future *before* reading the operation, so a change committed
    /// between the read and the wait is not missed.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut slots = self.registry.lock();
        // The map's own reference and ours: nobody else is waiting.
        if Arc::strong_count(&self.notify) <= 2 {
            slots.remove(&self.id);
        }
    }
}

impl OperationWaiters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn watch(self: &Arc<Self>, id: OperationId) -> WaitGuard {
        let notify = Arc::clone(self.lock().entry(id).or_default());
        WaitGuard {
            registry: Arc::clone(self),
            id,
            notify,
        }
    }

    /// Wakes everyone waiting on `id` (no-op when nobody is).
    pub fn wake(&self, id: OperationId) {
        if let Some(notify) = self.lock().get(&id) {
            notify.notify_waiters();
        }
    }

    /// Wakes every waiter (after a lost `LISTEN` connection: changes may
    /// have been missed; each waiter reads once and waits again).
    pub fn wake_all(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }

    /// How many operations are being waited on (metrics, tests).
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<OperationId, Arc<Notify>>> {
        // A panic while holding this lock cannot leave the map invalid.
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_change_wakes_its_waiters_and_slots_are_forgotten() {
        let registry = OperationWaiters::new();
        let id = OperationId::generate();
        let guard = registry.watch(id);
        let second = registry.watch(id);
        assert_eq!(registry.watched(), 1);
        {
            let woken = guard.notify().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            registry.wake(OperationId::generate());
            assert!(
                tokio::time::timeout(Duration::from_millis(20), woken.as_mut())
                    .await
                    .is_err()
            );
            registry.wake(id);
            tokio::time::timeout(Duration::from_secs(1), woken)
                .await
                .expect("woken");
        }
        drop(guard);
        assert_eq!(registry.watched(), 1, "still watched by the second waiter");
        drop(second);
        assert_eq!(registry.watched(), 0);
    }
}
