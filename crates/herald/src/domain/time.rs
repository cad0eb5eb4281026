//! Instants as integer milliseconds since the Unix epoch.
//!
//! One representation everywhere (clock, store, retry arithmetic) keeps
//! comparisons exact and SQL indexes simple; conversion to RFC 3339 happens
//! only at the wire.

use std::time::Duration;

use time::OffsetDateTime;

/// Milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds, rounded down: the unit of `webhook-timestamp`.
    pub const fn as_unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self + duration`, saturating instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-01-22T12:00:00.123Z`.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(datetime) => {
                let (year, month, day) = (datetime.year(), datetime.month() as u8, datetime.day());
                let (hour, minute, second) = (datetime.hour(), datetime.minute(), datetime.second());
                let millis = datetime.millisecond();
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
            }
            // Only reachable for instants beyond year 9999; keep a parseable form.
            Err(_) => format!("{}", self.0),
        }
    }
}

impl Timestamp {
    /// Parses RFC 3339 (any offset, any fraction; kept to the millisecond).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let datetime = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
        i64::try_from(datetime.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let ts = Timestamp::from_millis(1_769_083_200_123);
        assert_eq!(ts.to_rfc3339(), "2026-01-22T12:00:00.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&ts.to_rfc3339()), Some(ts));
        assert_eq!(Timestamp::parse_rfc3339("2026-01-22T13:00:00.123+01:00"), Some(ts));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn seconds_round_down_and_arithmetic_saturates() {
        assert_eq!(Timestamp::from_millis(1999).as_unix_seconds(), 1);
        assert_eq!(
            Timestamp::from_millis(i64::MAX)
                .saturating_add(Duration::from_secs(1))
                .as_millis(),
            i64::MAX
        );
        assert_eq!(
            Timestamp::from_millis(5).duration_since(Timestamp::from_millis(10)),
            Duration::ZERO
        );
    }
}
