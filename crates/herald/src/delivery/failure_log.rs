//! Failed attempts at `warn`, rate-limited per webhook: the first failure
//! of a webhook is logged at once; after that at most one line per
//! `INTERVAL`, saying how many failures it stands for. A dead endpoint with
//! a deep backlog therefore costs one log line a minute, not one per
//! attempt, and an operator still sees every failing webhook and why.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{AttemptErrorKind, WebhookId};
use crate::store::Completion;

/// At most one line per webhook per this interval.
const INTERVAL: Duration = Duration::from_secs(60);
/// Webhooks remembered at most; past that, quiet entries are forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub(super) struct FailureLog {
    webhooks: Mutex<HashMap<WebhookId, Window>>,
}

struct Window {
    /// When the last line for this webhook was written.
    logged_at: Instant,
    /// Failures since then that were not logged.
    suppressed: u64,
}

/// What to log for one failure, if anything.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line {
    /// Failures this line stands for (this one and those suppressed before it).
    pub failures: u64,
}

impl FailureLog {
    /// Logs `completion` if it is a failed attempt and its webhook is due a line.
    pub fn note(&self, completion: &Completion) {
        let Some(attempt) = &completion.attempt else { return };
        let Some(kind) = attempt.error_kind else { return };
        let Some(line) = self.admit(completion.webhook_id, Instant::now()) else {
            return;
        };
        tracing::warn!(
            webhook = %completion.webhook_id,
            delivery = %completion.delivery_id,
            error_kind = kind.as_str(),
            status = attempt.status_code,
            attempt = attempt.number,
            failures = line.failures,
            error = attempt.error_message.as_deref().unwrap_or(""),
            "delivery attempt failed{}",
            if kind == AttemptErrorKind::HttpStatus { "" } else { " without a response" }
        );
    }

    /// Decides whether a failure of `webhook` at `now` gets a line.
    pub(super) fn admit(&self, webhook: WebhookId, now: Instant) -> Option<Line> {
        let Ok(mut webhooks) = self.webhooks.lock() else {
            return None;
        };
        if let Some(window) = webhooks.get_mut(&webhook) {
            if now.duration_since(window.logged_at) < INTERVAL {
                window.suppressed += 1;
                return None;
            }
            let failures = window.suppressed + 1;
            *window = Window {
                logged_at: now,
                suppressed: 0,
            };
            return Some(Line { failures });
        }
        if webhooks.len() >= MAX_TRACKED {
            webhooks.retain(|_, window| now.duration_since(window.logged_at) < INTERVAL);
        }
        webhooks.insert(
            webhook,
            Window {
                logged_at: now,
                suppressed: 0,
            },
        );
        Some(Line { failures: 1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_webhook_per_interval_counting_the_rest() {
        let log = FailureLog::default();
        let (a, b) = (WebhookId::generate(), WebhookId::generate());
        let t0 = Instant::now();
        assert_eq!(log.admit(a, t0), Some(Line { failures: 1 }));
        assert_eq!(
            log.admit(b, t0),
            Some(Line { failures: 1 }),
            "webhooks are limited separately"
        );
        for second in 1..=5 {
            assert_eq!(log.admit(a, t0 + Duration::from_secs(second)), None);
        }
        assert_eq!(log.admit(a, t0 + INTERVAL), Some(Line { failures: 6 }));
        assert_eq!(log.admit(a, t0 + INTERVAL + Duration::from_secs(1)), None);
    }
}
