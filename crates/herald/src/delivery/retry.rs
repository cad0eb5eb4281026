//! The retry policy: what happens to a delivery after each attempt.
//!
//! Pure functions of (attempt number, outcome, now, event time, jitter
//! sample), so the whole schedule is testable without a clock or a network.
//!
//! Rules, in order:
//! 1. a 2xx response: succeeded;
//! 2. `410 Gone`: failed, and the webhook is disabled (the receiver says the
//!    endpoint is gone for good);
//! 3. attempts used up (1 + the schedule's length), or the retry window
//!    (`max_age` after the event) closed: failed;
//! 4. otherwise retry after the schedule's next delay ± jitter; on 429/503 a
//!    longer `Retry-After` (clamped to `retry_after_max`) pushes the retry
//!    later, a shorter one never brings it earlier (a receiver saying "retry
//!    in 1 s" must not burn the attempts meant to span 24 hours); never later
//!    than the window's end, so the last attempt happens within it.

use std::time::Duration;

use crate::domain::Timestamp;
use crate::store::NextStep;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delays before the 2nd, 3rd, … attempts; the first attempt is immediate.
    pub schedule: Vec<Duration>,
    /// Each delay is scaled by `1 + jitter × s` for a sample `s` in [-1, 1].
    pub jitter: f64,
    /// No attempt is scheduled later than this long after the event.
    pub max_age: Duration,
    /// The longest `Retry-After` honoured.
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600]
                .map(Duration::from_secs)
                .to_vec(),
            jitter: 0.2,
            max_age: Duration::from_secs(24 * 3600),
            retry_after_max: Duration::from_secs(3600),
        }
    }
}

/// What an attempt produced, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No HTTP response (timeout, connection, DNS, TLS, SSRF refusal).
    NoResponse,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub next: NextStep,
    pub disable_webhook: Option<String>,
}

impl RetryPolicy {
    /// This policy with a webhook's own schedule in place of the server's
    /// (jitter, window and `Retry-After` bounds stay the server's).
    pub fn with_schedule(
        &self,
        schedule: Option<&crate::domain::controls::RetrySchedule>,
    ) -> std::borrow::Cow<'_, Self> {
        match schedule {
            None => std::borrow::Cow::Borrowed(self),
            Some(schedule) => std::borrow::Cow::Owned(Self {
                schedule: schedule.delays().to_vec(),
                ..self.clone()
            }),
        }
    }

    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len()).unwrap_or(u32::MAX).saturating_add(1)
    }

    /// Decides after attempt `attempt_number` (1-based). `jitter_sample` is
    /// in [-1, 1] (values outside are clamped).
    pub fn decide(
        &self,
        attempt_number: u32,
        outcome: Outcome,
        now: Timestamp,
        event_time: Timestamp,
        jitter_sample: f64,
    ) -> Decision {
        let retry_after = match outcome {
            Outcome::Status { code: 200..=299, .. } => return decided(NextStep::Succeeded),
            Outcome::Status { code: 410, .. } => {
                return Decision {
                    next: NextStep::Failed,
                    disable_webhook: Some(format!(
                        "the endpoint answered 410 Gone at {}; Herald disabled it",
                        now.to_rfc3339()
                    )),
                };
            }
            Outcome::Status {
                code: 429 | 503,
                retry_after,
            } => retry_after,
            Outcome::Status { .. } | Outcome::NoResponse => None,
        };
        let deadline = event_time.saturating_add(self.max_age);
        let index = usize::try_from(attempt_number.saturating_sub(1)).unwrap_or(usize::MAX);
        let Some(scheduled) = self.schedule.get(index) else {
            return decided(NextStep::Failed);
        };
        if now >= deadline {
            return decided(NextStep::Failed);
        }
        let scheduled = scaled(*scheduled, self.jitter * jitter_sample.clamp(-1.0, 1.0));
        let delay = match retry_after {
            Some(asked) => scheduled.max(asked.min(self.retry_after_max)),
            None => scheduled,
        };
        decided(NextStep::RetryAt(now.saturating_add(delay).min(deadline)))
    }
}

fn decided(next: NextStep) -> Decision {
    Decision {
        next,
        disable_webhook: None,
    }
}

/// `delay × (1 + factor)`, saturating instead of panicking on overflow.
fn scaled(delay: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * (1.0 + factor).max(0.0)).unwrap_or(Duration::MAX)
}

/// A source of jitter samples in [-1, 1], injected so tests are exact.
pub trait Jitter: Send + Sync + 'static {
    fn sample(&self) -> f64;
}

/// Uniformly random jitter: the default.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn sample(&self) -> f64 {
        rand::random_range(-1.0..=1.0)
    }
}

/// The same sample every time (0.0: no jitter).
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn sample(&self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000_000);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn fail(code: u16) -> Outcome {
        Outcome::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn default_schedule_without_jitter() {
        let policy = RetryPolicy::default();
        let mut now = T0;
        let mut delays = Vec::new();
        for attempt in 1.. {
            match policy.decide(attempt, fail(500), now, T0, 0.0).next {
                NextStep::RetryAt(at) => {
                    delays.push(at.duration_since(now));
                    now = at;
                }
                NextStep::Failed => break,
                NextStep::Succeeded => unreachable!("a 500 never succeeds"),
            }
        }
        assert_eq!(
            delays,
            [secs(5), secs(300), secs(1800), secs(7200), secs(18000), secs(36000)]
        );
        assert_eq!(policy.max_attempts(), 7);
        assert!(now.duration_since(T0) < secs(24 * 3600));
    }

    #[test]
    fn jitter_scales_each_delay_by_at_most_twenty_percent() {
        let policy = RetryPolicy::default();
        for (sample, expected) in [(-1.0, 4000), (1.0, 6000), (0.5, 5500), (7.0, 6000)] {
            let decision = policy.decide(1, fail(500), T0, T0, sample);
            assert_eq!(
                decision.next,
                NextStep::RetryAt(T0.saturating_add(Duration::from_millis(expected)))
            );
        }
    }

    #[test]
    fn success_gone_and_exhaustion() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.decide(3, fail(204), T0, T0, 0.0).next, NextStep::Succeeded);
        let gone = policy.decide(1, fail(410), T0, T0, 0.0);
        assert_eq!(gone.next, NextStep::Failed);
        assert!(gone.disable_webhook.is_some_and(|reason| reason.contains("410")));
        assert_eq!(policy.decide(7, fail(500), T0, T0, 0.0).next, NextStep::Failed);
        for redirect in [301, 302, 307, 308] {
            assert!(matches!(
                policy.decide(1, fail(redirect), T0, T0, 0.0).next,
                NextStep::RetryAt(_)
            ));
        }
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let policy = RetryPolicy::default();
        let throttled = |code, s| Outcome::Status {
            code,
            retry_after: Some(secs(s)),
        };
        let after = |attempt, outcome| policy.decide(attempt, outcome, T0, T0, 0.0).next;
        assert_eq!(
            after(1, throttled(429, 120)),
            NextStep::RetryAt(T0.saturating_add(secs(120)))
        );
        // A shorter Retry-After never brings a retry earlier than the schedule.
        assert_eq!(
            after(1, throttled(503, 0)),
            NextStep::RetryAt(T0.saturating_add(secs(5)))
        );
        assert_eq!(
            after(3, throttled(429, 1)),
            NextStep::RetryAt(T0.saturating_add(secs(1800)))
        );
        assert_eq!(
            after(1, throttled(429, 86_400)),
            NextStep::RetryAt(T0.saturating_add(secs(3600)))
        );
        // Other statuses ignore Retry-After.
        assert_eq!(
            after(1, throttled(500, 120)),
            NextStep::RetryAt(T0.saturating_add(secs(5)))
        );
    }

    #[test]
    fn huge_delays_saturate_instead_of_panicking() {
        let policy = RetryPolicy {
            schedule: vec![Duration::MAX],
            jitter: 1.0,
            ..RetryPolicy::default()
        };
        let decision = policy.decide(1, fail(500), T0, T0, 1.0);
        assert_eq!(decision.next, NextStep::RetryAt(T0.saturating_add(secs(24 * 3600))));
    }

    #[test]
    fn a_webhook_schedule_replaces_the_servers() {
        let own = crate::domain::controls::RetrySchedule::new(vec![secs(1), secs(2)], secs(24 * 3600)).expect("valid");
        let server = RetryPolicy::default();
        let policy = server.with_schedule(Some(&own));
        assert_eq!(policy.max_attempts(), 3);
        assert_eq!(
            policy.decide(2, fail(500), T0, T0, 0.0).next,
            NextStep::RetryAt(T0.saturating_add(secs(2)))
        );
        assert_eq!(policy.decide(3, fail(500), T0, T0, 0.0).next, NextStep::Failed);
        assert_eq!(server.with_schedule(None).max_attempts(), 7);
    }

    #[test]
    fn nothing_is_scheduled_after_the_window() {
        let policy = RetryPolicy::default();
        let late = T0.saturating_add(secs(23 * 3600));
        // 10 h would pass the 24 h window: the last attempt is at its end.
        assert_eq!(
            policy.decide(6, fail(500), late, T0, 0.0).next,
            NextStep::RetryAt(T0.saturating_add(secs(24 * 3600)))
        );
        let closed = T0.saturating_add(secs(24 * 3600));
        assert_eq!(policy.decide(2, fail(500), closed, T0, 0.0).next, NextStep::Failed);
    }
}
