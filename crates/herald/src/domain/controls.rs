//! Per-endpoint controls: a webhook's rate limit, concurrency limit,
//! delivery order and retry schedule, validated at construction, and the
//! one rule deciding how many of its due deliveries a claim may take.
//!
//! Backends persist the rate limiter's state (`rate_next_us`, the instant
//! before which no further send is admitted) and ask [`EndpointControls::claim_limit`]
//! how many to take; they never decide it themselves.

use std::time::Duration;

use super::{Invalid, Timestamp};

/// The highest `rate_limit_per_second` accepted: the limiter spaces sends
/// by whole microseconds and the dispatcher wakes once per admitted send.
pub const MAX_RATE_PER_SECOND: u32 = 1000;
/// The highest `max_concurrency` accepted.
pub const MAX_CONCURRENCY: u32 = 1000;
/// The most entries a webhook's `retry_schedule` may have.
pub const MAX_RETRIES: usize = 50;

/// Sends per second, cluster-wide. The limiter is a GCRA ("virtual
/// scheduling") bucket of one token: consecutive sends are admitted at
/// least `1/rate` apart, so any window of length `w` holds at most
/// `1 + rate × w` of them, whichever nodes claim them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(u32);

impl RateLimit {
    pub fn new(per_second: u64) -> Result<Self, Invalid> {
        match u32::try_from(per_second) {
            Ok(rate @ 1..=MAX_RATE_PER_SECOND) => Ok(Self(rate)),
            _ => Err(Invalid::new(format!(
                "must be an integer from 1 to {MAX_RATE_PER_SECOND} (sends per second), or null for no limit"
            ))),
        }
    }

    pub fn per_second(self) -> u32 {
        self.0
    }

    /// The spacing between two admitted sends, rounded up so the rate is
    /// never exceeded.
    pub fn interval_us(self) -> i64 {
        let rate = i64::from(self.0);
        (1_000_000 + rate - 1) / rate
    }

    /// How many sends (at most `wanted`) are admitted at `now`, given the
    /// stored next-admission instant (`None`: never used).
    pub fn admitted(self, next_us: Option<i64>, now: Timestamp, wanted: u32) -> u32 {
        let now_us = now.as_millis().saturating_mul(1000);
        let base = next_us.unwrap_or(now_us).max(now_us);
        if wanted == 0 || base > now_us {
            return 0;
        }
        // One token: the first send is due at `base` (≤ now), the next one
        // only an interval later, which is in the future.
        1
    }

    /// The next-admission instant after `sent` sends were taken at `now`.
    pub fn next_after(self, next_us: Option<i64>, now: Timestamp, sent: u32) -> i64 {
        let now_us = now.as_millis().saturating_mul(1000);
        let base = next_us.unwrap_or(now_us).max(now_us);
        base.saturating_add(self.interval_us().saturating_mul(i64::from(sent)))
    }
}

/// At most this many of the webhook's deliveries in flight at once,
/// cluster-wide (counted as unexpired leases in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxConcurrency(u32);

impl MaxConcurrency {
    pub fn new(value: u64) -> Result<Self, Invalid> {
        match u32::try_from(value) {
            Ok(n @ 1..=MAX_CONCURRENCY) => Ok(Self(n)),
            _ => Err(Invalid::new(format!(
                "must be an integer from 1 to {MAX_CONCURRENCY}, or null for the server's per-endpoint cap"
            ))),
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// In which order a webhook's deliveries are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Any order, concurrently (up to the caps).
    #[default]
    None,
    /// Strictly by event time, then delivery id: one at a time, the next
    /// only once the previous one succeeded or failed for good.
    Fifo,
}

impl Ordering {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Fifo => "fifo",
        }
    }

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        match text {
            "none" => Ok(Self::None),
            "fifo" => Ok(Self::Fifo),
            _ => Err(Invalid::new("must be \"none\" or \"fifo\"")),
        }
    }
}

/// Delays before the 2nd, 3rd, … attempts, replacing the server's
/// schedule for one webhook. Bounded by the server's retry window: the
/// delays add up to at most `delivery.max_age`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    pub fn new(delays: Vec<Duration>, window: Duration) -> Result<Self, Invalid> {
        if delays.is_empty() || delays.len() > MAX_RETRIES {
            return Err(Invalid::new(format!(
                "must list 1 to {MAX_RETRIES} delays (null for the server's schedule)"
            )));
        }
        if let Some(index) = delays.iter().position(|d| *d < Duration::from_secs(1)) {
            return Err(Invalid::new(format!("delay {index} is shorter than one second")));
        }
        let total = delays.iter().fold(Duration::ZERO, |sum, d| sum.saturating_add(*d));
        if total > window {
            return Err(Invalid::new(format!(
                "the delays add up to {}, past the server's retry window of {} (delivery.max_age)",
                humantime::format_duration(total),
                humantime::format_duration(window)
            )));
        }
        Ok(Self(delays))
    }

    /// A schedule read back from the store, validated when it was written.
    pub fn from_trusted(delays: Vec<Duration>) -> Self {
        Self(delays)
    }

    pub fn delays(&self) -> &[Duration] {
        &self.0
    }
}

/// A webhook's controls; the default is none of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointControls {
    pub rate_limit: Option<RateLimit>,
    pub max_concurrency: Option<MaxConcurrency>,
    pub ordering: Ordering,
    pub retry_schedule: Option<RetrySchedule>,
}

/// What a claim knows of one webhook when it decides how many to take.
#[derive(Debug, Clone, Copy)]
pub struct ClaimState {
    pub now: Timestamp,
    /// What the claiming dispatcher can still hold for this webhook.
    pub room: u32,
    /// The server's per-webhook cap on unexpired leases.
    pub max_leased: u32,
    /// Unexpired leases the webhook holds now, on every node.
    pub leased: u32,
    /// The rate limiter's stored next-admission instant.
    pub rate_next_us: Option<i64>,
}

/// How many to take, and whether the webhook is at a cap (not due for
/// this claimer until a lease ends) rather than waiting for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimit {
    pub take: u32,
    pub capped: bool,
}

impl EndpointControls {
    /// The one claim rule: the dispatcher's room, the server cap lowered
    /// by `max_concurrency`, one at a time and only with nothing in
    /// flight for FIFO, and the rate limiter's admission.
    pub fn claim_limit(&self, state: ClaimState) -> ClaimLimit {
        let mut cap = state.max_leased;
        if let Some(max) = self.max_concurrency {
            cap = cap.min(max.get());
        }
        if self.ordering == Ordering::Fifo {
            cap = cap.min(1);
        }
        let free = state.room.min(cap.saturating_sub(state.leased));
        if free == 0 {
            return ClaimLimit { take: 0, capped: true };
        }
        let take = match self.rate_limit {
            Some(rate) => rate.admitted(state.rate_next_us, state.now, free),
            None => free,
        };
        ClaimLimit { take, capped: false }
    }

    /// The rate limiter's state after `taken` deliveries were leased
    /// (unchanged, `None`, without a rate limit or when nothing was taken).
    pub fn rate_after_claim(&self, state: &ClaimState, taken: u32) -> Option<i64> {
        match self.rate_limit {
            Some(rate) if taken > 0 => Some(rate.next_after(state.rate_next_us, state.now, taken)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn state(now: Timestamp, rate_next_us: Option<i64>) -> ClaimState {
        ClaimState {
            now,
            room: 16,
            max_leased: 16,
            leased: 0,
            rate_next_us,
        }
    }

    #[test]
    fn values_are_bounded() {
        assert!(RateLimit::new(0).is_err());
        assert!(RateLimit::new(1001).is_err());
        assert_eq!(RateLimit::new(5).map(RateLimit::interval_us), Ok(200_000));
        assert_eq!(RateLimit::new(3).map(RateLimit::interval_us), Ok(333_334));
        assert!(MaxConcurrency::new(0).is_err());
        assert!(MaxConcurrency::new(u64::MAX).is_err());
        assert!(Ordering::parse("FIFO").is_err());
        let day = Duration::from_secs(86_400);
        assert!(RetrySchedule::new(vec![], day).is_err());
        assert!(RetrySchedule::new(vec![Duration::from_millis(10)], day).is_err());
        assert!(RetrySchedule::new(vec![Duration::from_secs(3600); 25], day).is_err());
        assert!(RetrySchedule::new(vec![Duration::from_secs(3600); 24], day).is_ok());
    }

    #[test]
    fn a_rate_limited_claim_takes_one_per_interval_over_a_window() {
        let controls = EndpointControls {
            rate_limit: Some(RateLimit::new(5).expect("valid")),
            ..EndpointControls::default()
        };
        // Claims every 10 ms for 10 s: exactly 5 admitted per second.
        let mut next = None;
        let mut per_second = [0u32; 10];
        for step in 0..1000 {
            let now = T0.saturating_add(Duration::from_millis(step * 10));
            let s = state(now, next);
            let limit = controls.claim_limit(s);
            assert!(!limit.capped);
            if limit.take > 0 {
                next = controls.rate_after_claim(&s, limit.take);
                per_second[usize::try_from(step / 100).expect("small")] += limit.take;
            }
        }
        assert_eq!(per_second, [5; 10]);
    }

    #[test]
    fn fifo_and_max_concurrency_cap_what_is_leased() {
        let fifo = EndpointControls {
            ordering: Ordering::Fifo,
            ..EndpointControls::default()
        };
        assert_eq!(fifo.claim_limit(state(T0, None)), ClaimLimit { take: 1, capped: false });
        let busy = ClaimState {
            leased: 1,
            ..state(T0, None)
        };
        assert_eq!(fifo.claim_limit(busy), ClaimLimit { take: 0, capped: true });
        let limited = EndpointControls {
            max_concurrency: Some(MaxConcurrency::new(3).expect("valid")),
            ..EndpointControls::default()
        };
        assert_eq!(limited.claim_limit(state(T0, None)).take, 3);
        let two_held = ClaimState {
            leased: 2,
            ..state(T0, None)
        };
        assert_eq!(limited.claim_limit(two_held).take, 1);
        assert_eq!(EndpointControls::default().claim_limit(two_held).take, 14);
    }
}
