//! Deliveries (one event to one webhook) and their attempts.

use std::time::Duration;

use super::Timestamp;

/// The life of a delivery. `Pending` covers both "waiting for its next
/// attempt" and "an attempt is in flight" (leased); only the queue tells
/// them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Succeeded,
    /// Attempts used up, the retry window closed, the endpoint answered
    /// `410 Gone`, or the webhook was deleted. Kept and visible.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptErrorKind {
    /// No complete response within the delivery timeout.
    Timeout,
    /// The TCP connection could not be made (refused, unreachable, reset).
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// Every address of the endpoint is one Herald refuses to call.
    SsrfBlocked,
    /// The endpoint answered with a non-2xx status.
    HttpStatus,
    /// The connection broke mid-exchange or the response was not valid HTTP.
    Protocol,
    /// The worker stopped (crash, kill) before the attempt's outcome was recorded.
    Interrupted,
    /// Herald could not sign the request: a stored key is unusable.
    Signing,
}

impl AttemptErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::SsrfBlocked => "ssrf_blocked",
            Self::HttpStatus => "http_status",
            Self::Protocol => "protocol",
            Self::Interrupted => "interrupted",
            Self::Signing => "signing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Timeout,
            Self::Connect,
            Self::Dns,
            Self::Tls,
            Self::SsrfBlocked,
            Self::HttpStatus,
            Self::Protocol,
            Self::Interrupted,
            Self::Signing,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One attempt to deliver, as recorded in the delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1 for the first attempt of a delivery, then 2, 3, …
    pub number: u32,
    pub start_time: Timestamp,
    pub duration: Duration,
    pub status_code: Option<u16>,
    /// The first bytes of the response body (lossy UTF-8), bounded by configuration.
    pub response_excerpt: Option<String>,
    /// `None` when the attempt succeeded.
    pub error_kind: Option<AttemptErrorKind>,
    pub error_message: Option<String>,
}

impl AttemptRecord {
    /// An attempt whose outcome was never recorded because its lease ended
    /// first: the worker (or its node) stopped or stalled. When it started
    /// and how long it ran are unknown; `now` is when the loss was noticed.
    pub fn lease_lapsed(number: u32, now: Timestamp) -> Self {
        Self {
            number,
            start_time: now,
            duration: Duration::ZERO,
            status_code: None,
            response_excerpt: None,
            error_kind: Some(AttemptErrorKind::Interrupted),
            error_message: Some(
                "the attempt's outcome was never recorded: its worker stopped or stalled past the lease".into(),
            ),
        }
    }

    /// An attempt cut off by a graceful shutdown: the request had been open
    /// since `start_time` for `duration` and may have arrived.
    pub fn cut_off_at_shutdown(number: u32, start_time: Timestamp, duration: Duration) -> Self {
        Self {
            number,
            start_time,
            duration,
            status_code: None,
            response_excerpt: None,
            error_kind: Some(AttemptErrorKind::Interrupted),
            error_message: Some("Herald shut down before the endpoint answered; the request may have arrived".into()),
        }
    }
}

/// Why a delivery ended or last failed, as its `last_error` shows it: the
/// last attempt's error kind, or a reason no attempt carries.
pub mod reason {
    /// The retry window closed while the delivery was held (its webhook was
    /// disabled) or lost its lease at the window's end.
    pub const EXPIRED: &str = "expired";
    /// The webhook was deleted with the delivery unfinished.
    pub const WEBHOOK_DELETED: &str = "webhook_deleted";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_records_say_so_and_keep_their_timing() {
        let now = Timestamp::from_millis(1_000);
        let lapsed = AttemptRecord::lease_lapsed(3, now);
        assert_eq!(lapsed.error_kind, Some(AttemptErrorKind::Interrupted));
        assert_eq!((lapsed.number, lapsed.start_time), (3, now));
        let cut = AttemptRecord::cut_off_at_shutdown(2, now, Duration::from_secs(14));
        assert_eq!(cut.duration, Duration::from_secs(14));
        assert_eq!(cut.error_kind.map(AttemptErrorKind::as_str), Some("interrupted"));
    }
}
