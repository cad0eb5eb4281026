//! The verifiers' source of "now", injected so tests never depend on the
//! wall clock.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since 1970-01-01T00:00:00Z (negative before it).
    fn now_unix_seconds(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_seconds(&self) -> i64 {
        // Saturates instead of panicking on clocks beyond the i64 range.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
        }
    }
}

/// A clock stopped at a given second, for tests and for checking captured
/// messages "as of" their time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix_seconds(&self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_report_seconds() {
        assert_eq!(FixedClock(42).now_unix_seconds(), 42);
        // 2020-09-13T12:26:40Z: any real clock is past it.
        assert!(SystemClock.now_unix_seconds() > 1_600_000_000);
    }
}
