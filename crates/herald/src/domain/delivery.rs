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
