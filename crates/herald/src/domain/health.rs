//! Endpoint health: when Herald disables a webhook that keeps failing
//! (auto-disable), and when a success counts as a recovery. One rule for
//! every backend: stores keep two counters on the webhook row, update them
//! in the transaction that records each scheduled attempt, and persist
//! what [`HealthPolicy::after_attempt`] decides. No attempt ever needs a
//! scan of the log.
//!
//! A webhook is disabled (`disabled_due_to_failed_deliveries`) when BOTH
//! hold: its last `disable_after_failures` scheduled attempts all failed,
//! and the first of that run of failures is at least `disable_after` old
//! (no success since). The count keeps a rarely used endpoint from being
//! disabled on a handful of failures; the period keeps a busy endpoint
//! that is down for an evening (thousands of failures in a few hours) from
//! being disabled. Manual attempts (`:redeliver`, `:ping`) count for
//! neither the run nor its end.

use std::time::Duration;

use super::Timestamp;

/// The auto-disable rule's settings (`health.*` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Disable only after no successful delivery for this long...
    pub disable_after: Duration,
    /// ...and at least this many failed scheduled attempts in a row.
    /// `0` turns auto-disable off.
    pub disable_after_failures: u32,
    /// A success that ends a run of at least this many failed attempts
    /// emits `delivery.recovered` (a single blip does not).
    pub recovered_after_failures: u32,
}

impl Default for HealthPolicy {
    /// 5 days and 100 failures: a receiver down for an evening, or for a
    /// long weekend, is not disabled; a dead one with any traffic stops
    /// costing attempts within about five days (the defaults' retry
    /// schedule makes 7 attempts per event over about 18 hours).
    fn default() -> Self {
        Self {
            disable_after: Duration::from_secs(5 * 24 * 3600),
            disable_after_failures: 100,
            recovered_after_failures: 3,
        }
    }
}

/// What the webhook row remembers between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthCounters {
    /// Failed scheduled attempts since the last successful one.
    pub consecutive_failures: u32,
    /// When the first of those failures started; `None` when there are none.
    pub failing_since: Option<Timestamp>,
}

/// What one scheduled attempt changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthStep {
    pub counters: HealthCounters,
    /// Disable the webhook now (it was enabled and the rule is met).
    pub disable: bool,
    /// This success ended a run of failures long enough to announce.
    pub recovered: Option<Recovery>,
}

/// The run of failures a success ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    pub failed_attempts: u32,
    pub failing_since: Option<Timestamp>,
}

impl HealthPolicy {
    /// The counters after a scheduled attempt that started at `started`
    /// and was judged at `now`; `enabled`: whether the webhook may still be
    /// disabled (a disabled one stays as it is).
    pub fn after_attempt(
        &self,
        before: HealthCounters,
        success: bool,
        started: Timestamp,
        now: Timestamp,
        enabled: bool,
    ) -> HealthStep {
        if success {
            let recovered = (before.consecutive_failures > 0
                && before.consecutive_failures >= self.recovered_after_failures)
                .then_some(Recovery {
                    failed_attempts: before.consecutive_failures,
                    failing_since: before.failing_since,
                });
            return HealthStep {
                counters: HealthCounters::default(),
                disable: false,
                recovered,
            };
        }
        let counters = HealthCounters {
            consecutive_failures: before.consecutive_failures.saturating_add(1),
            failing_since: Some(before.failing_since.unwrap_or(started)),
        };
        HealthStep {
            counters,
            disable: enabled && self.should_disable(counters, now),
            recovered: None,
        }
    }

    fn should_disable(&self, counters: HealthCounters, now: Timestamp) -> bool {
        let Some(since) = counters.failing_since else {
            return false;
        };
        self.disable_after_failures > 0
            && counters.consecutive_failures >= self.disable_after_failures
            && since.saturating_add(self.disable_after) <= now
    }

    /// The `state_reason` a disabled webhook shows.
    pub fn disable_reason(&self, counters: HealthCounters, now: Timestamp) -> String {
        let since = counters
            .failing_since
            .map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
        format!(
            "no successful delivery since {since} and {} failed attempts in a row; Herald disabled it at {}",
            counters.consecutive_failures,
            now.to_rfc3339()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            disable_after: Duration::from_secs(24 * 3600),
            disable_after_failures: 3,
            recovered_after_failures: 2,
        }
    }

    fn at(hours: i64) -> Timestamp {
        Timestamp::from_millis(hours * HOUR)
    }

    #[test]
    fn both_the_count_and_the_period_are_needed_to_disable() {
        let policy = policy();
        let mut counters = HealthCounters::default();
        // Many failures within an evening: not disabled.
        for hour in 0..10 {
            let step = policy.after_attempt(counters, false, at(hour), at(hour), true);
            assert!(!step.disable, "hour {hour}");
            counters = step.counters;
        }
        assert_eq!(counters.consecutive_failures, 10);
        assert_eq!(counters.failing_since, Some(at(0)));
        // A day after the first failure: disabled.
        let step = policy.after_attempt(counters, false, at(24), at(24), true);
        assert!(step.disable);
        // Already disabled: never disabled twice.
        assert!(!policy.after_attempt(counters, false, at(24), at(24), false).disable);

        // Few failures over a long time: not disabled.
        let two = HealthCounters {
            consecutive_failures: 1,
            failing_since: Some(at(0)),
        };
        assert!(!policy.after_attempt(two, false, at(100), at(100), true).disable);
        // Off.
        let off = HealthPolicy {
            disable_after_failures: 0,
            ..policy
        };
        assert!(!off.after_attempt(counters, false, at(500), at(500), true).disable);
    }

    #[test]
    fn a_success_resets_and_announces_only_a_long_enough_run() {
        let policy = policy();
        let one = HealthCounters {
            consecutive_failures: 1,
            failing_since: Some(at(1)),
        };
        let step = policy.after_attempt(one, true, at(2), at(2), true);
        assert_eq!(step.counters, HealthCounters::default());
        assert_eq!(step.recovered, None);
        let two = HealthCounters {
            consecutive_failures: 2,
            failing_since: Some(at(1)),
        };
        let step = policy.after_attempt(two, true, at(2), at(2), true);
        assert_eq!(
            step.recovered,
            Some(Recovery {
                failed_attempts: 2,
                failing_since: Some(at(1))
            })
        );
        assert_eq!(
            policy
                .after_attempt(HealthCounters::default(), true, at(2), at(2), true)
                .recovered,
            None
        );
    }
}
