//! Remembering accepted `webhook-id`s so a captured request cannot be
//! replayed while its timestamp is still within the tolerance.
//!
//! Policy: an id is recorded only after its signature verified (see
//! [`VerifiedWebhook::record`](crate::VerifiedWebhook::record)), so unsigned
//! requests cannot fill the guard; an id is remembered until the verifier
//! would refuse the message by its timestamp alone; a full guard fails
//! closed ([`ReplayError::Full`]) instead of forgetting an unexpired id.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};

use crate::error::ReplayError;

/// Storage for accepted message ids. Implement it over Redis, a database…
/// to share it between processes (for example `SET id 1 NX EXAT expires_at+1`).
pub trait ReplayGuard: Send + Sync {
    /// Atomically: if `id` is recorded and not expired, return
    /// [`ReplayError::Replayed`]; otherwise record it until `expires_at`.
    ///
    /// `expires_at` is the last Unix second at which the verifier could
    /// still accept this message (its timestamp plus the tolerance); after
    /// it the id may be forgotten. `now` is the verifier's clock.
    ///
    /// # Errors
    /// [`ReplayError::Replayed`] for a replay; [`ReplayError::Full`] or
    /// [`ReplayError::Unavailable`] when the id cannot be recorded (the
    /// message must then be refused: fail closed).
    fn check_and_record(&self, id: &str, expires_at: i64, now: i64) -> Result<(), ReplayError>;
}

impl<T: ReplayGuard + ?Sized> ReplayGuard for Arc<T> {
    fn check_and_record(&self, id: &str, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        (**self).check_and_record(id, expires_at, now)
    }
}

/// A thread-safe in-memory [`ReplayGuard`] with a fixed capacity.
///
/// Memory is bounded by `capacity` ids (each at most
/// [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes, stored once). Expired ids are
/// evicted first, oldest expiry first; if every slot holds an unexpired id,
/// new ids are refused with [`ReplayError::Full`] until some expire. Size
/// the capacity for your peak rate times the tolerance window (for example
/// 100 messages/s × 600 s = 60 000).
#[derive(Debug)]
pub struct InMemoryReplayGuard {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Recorded ids and their expiry.
    expiry_by_id: HashMap<Arc<str>, i64>,
    /// The same entries ordered by expiry, to evict in O(log n).
    by_expiry: BinaryHeap<Reverse<(i64, Arc<str>)>>,
}

impl InMemoryReplayGuard {
    /// A guard remembering at most `capacity` unexpired ids (at least 1).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// The maximum number of ids held.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ids currently held (expired ones may linger until the next call).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().expiry_by_id.len()
    }

    /// Whether no id is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters (worst case an id is kept a little longer).
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn evict_expired(&mut self, now: i64) {
        while let Some(Reverse((expires_at, _))) = self.by_expiry.peek() {
            if *expires_at >= now {
                break;
            }
            let Some(Reverse((expires_at, id))) = self.by_expiry.pop() else {
                break;
            };
            if self.expiry_by_id.get(&id) == Some(&expires_at) {
                self.expiry_by_id.remove(&id);
            }
        }
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    fn check_and_record(&self, id: &str, expires_at: i64, now: i64) -> Result<(), ReplayError> {
        let mut state = self.lock();
        state.evict_expired(now);
        if state.expiry_by_id.contains_key(id) {
            return Err(ReplayError::Replayed);
        }
        if expires_at < now {
            // Already past its window: the verifier would refuse a replay
            // anyway, and recording it would only use a slot.
            return Ok(());
        }
        if state.expiry_by_id.len() >= self.capacity {
            return Err(ReplayError::Full {
                capacity: self.capacity,
            });
        }
        let id: Arc<str> = Arc::from(id);
        state.expiry_by_id.insert(Arc::clone(&id), expires_at);
        state.by_expiry.push(Reverse((expires_at, id)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_use_of_an_id_is_a_replay_until_it_expires() {
        let guard = InMemoryReplayGuard::new(10);
        assert!(guard.check_and_record("a", 100, 0).is_ok());
        assert!(matches!(
            guard.check_and_record("a", 100, 50),
            Err(ReplayError::Replayed)
        ));
        assert!(
            matches!(guard.check_and_record("a", 100, 100), Err(ReplayError::Replayed)),
            "expires_at is inclusive"
        );
        assert!(guard.check_and_record("a", 200, 101).is_ok(), "forgotten after expiry");
    }

    #[test]
    fn full_guard_fails_closed_until_ids_expire() {
        let guard = InMemoryReplayGuard::new(2);
        assert!(guard.check_and_record("a", 10, 0).is_ok());
        assert!(guard.check_and_record("b", 20, 0).is_ok());
        assert!(matches!(
            guard.check_and_record("c", 30, 5),
            Err(ReplayError::Full { capacity: 2 })
        ));
        assert!(
            matches!(guard.check_and_record("a", 30, 5), Err(ReplayError::Replayed)),
            "a full guard still detects replays"
        );
        assert!(guard.check_and_record("c", 30, 11).is_ok(), "a expired, freeing a slot");
        assert_eq!(guard.len(), 2);
        assert!(matches!(
            guard.check_and_record("b", 30, 12),
            Err(ReplayError::Replayed)
        ));
    }

    #[test]
    fn guard_is_shareable_across_threads() {
        let guard = Arc::new(InMemoryReplayGuard::new(1000));
        let accepted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let guard = Arc::clone(&guard);
                    scope.spawn(move || {
                        (0..100)
                            .filter(|i| guard.check_and_record(&format!("id{i}"), 10, 0).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(accepted, 100, "each id accepted exactly once across threads");
    }
}
