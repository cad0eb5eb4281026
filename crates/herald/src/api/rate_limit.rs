//! Per-project publish rate limit (`limits.publish_rate_per_project`): a
//! token bucket per project, refilled at the rate up to the burst.
//!
//! The buckets live in this node's memory: with several nodes a project may
//! publish the rate on each, and a restart refills every bucket. Time comes
//! from the injected clock, so tests move it instead of sleeping. One bucket
//! per project that has published: memory is bounded by the project count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::SharedClock;
use crate::config::LimitsConfig;
use crate::domain::ProjectId;

pub struct PublishLimiter {
    /// Events per second; `None` when the limit is off.
    rate: Option<f64>,
    burst: f64,
    clock: SharedClock,
    buckets: Mutex<HashMap<ProjectId, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated_ms: i64,
}

/// Why a publish may not go ahead now.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// Over the rate: enough tokens will be there after this long.
    RetryAfter(Duration),
    /// More events in one request than the burst: it can never pass.
    LargerThanBurst { burst: u32 },
}

impl PublishLimiter {
    pub fn new(limits: &LimitsConfig, clock: SharedClock) -> Self {
        Self {
            rate: (limits.publish_rate_per_project > 0.0).then_some(limits.publish_rate_per_project),
            burst: f64::from(limits.publish_burst_per_project),
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` tokens from `project`'s bucket, or says why not (and
    /// takes none).
    pub fn acquire(&self, project: ProjectId, events: usize) -> Result<(), Refusal> {
        let Some(rate) = self.rate else { return Ok(()) };
        let wanted = events as f64;
        if wanted > self.burst {
            return Err(Refusal::LargerThanBurst {
                burst: self.burst as u32,
            });
        }
        let now = self.clock.now().as_millis();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(project).or_insert(Bucket {
            tokens: self.burst,
            updated_ms: now,
        });
        let elapsed = (now - bucket.updated_ms).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.burst);
        bucket.updated_ms = now;
        if bucket.tokens >= wanted {
            bucket.tokens -= wanted;
            return Ok(());
        }
        let missing = wanted - bucket.tokens;
        Err(Refusal::RetryAfter(Duration::from_secs_f64(missing / rate)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::Timestamp;

    #[test]
    fn the_bucket_refills_at_the_rate_up_to_the_burst() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let limits = LimitsConfig {
            publish_rate_per_project: 2.0,
            publish_burst_per_project: 4,
            ..LimitsConfig::default()
        };
        let limiter = PublishLimiter::new(&limits, clock.clone());
        let (a, b) = (ProjectId::generate(), ProjectId::generate());
        assert_eq!(limiter.acquire(a, 4), Ok(()));
        assert_eq!(
            limiter.acquire(a, 1),
            Err(Refusal::RetryAfter(Duration::from_millis(500)))
        );
        assert_eq!(limiter.acquire(b, 1), Ok(()), "projects do not share a bucket");
        clock.advance(Duration::from_millis(500));
        assert_eq!(limiter.acquire(a, 1), Ok(()));
        clock.advance(Duration::from_secs(60));
        assert_eq!(limiter.acquire(a, 5), Err(Refusal::LargerThanBurst { burst: 4 }));
        assert_eq!(limiter.acquire(a, 4), Ok(()), "refilled only up to the burst");
        assert!(limiter.acquire(a, 1).is_err());
    }

    #[test]
    fn off_by_default() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(0)));
        let limiter = PublishLimiter::new(&LimitsConfig::default(), clock);
        for _ in 0..10_000 {
            assert_eq!(limiter.acquire(ProjectId::generate(), 1000), Ok(()));
        }
    }
}
