//! What both backends share of per-endpoint controls: the PATCH rule and
//! the stored forms (`ordering` as text, `retry_schedule` as a JSON array
//! of milliseconds).

use std::time::Duration;

use crate::domain::controls::{EndpointControls, MaxConcurrency, Ordering, RateLimit, RetrySchedule};

/// Controls to change; `None` leaves one as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ControlsPatch {
    pub rate_limit: Option<Option<RateLimit>>,
    pub max_concurrency: Option<Option<MaxConcurrency>>,
    pub ordering: Option<Ordering>,
    pub retry_schedule: Option<Option<RetrySchedule>>,
}

impl ControlsPatch {
    pub fn is_empty(&self) -> bool {
        self.rate_limit.is_none()
            && self.max_concurrency.is_none()
            && self.ordering.is_none()
            && self.retry_schedule.is_none()
    }

    /// `current` with the patch applied; every backend persists exactly this.
    pub fn applied_to(&self, current: &EndpointControls) -> EndpointControls {
        let mut updated = current.clone();
        if let Some(rate) = self.rate_limit {
            updated.rate_limit = rate;
        }
        if let Some(max) = self.max_concurrency {
            updated.max_concurrency = max;
        }
        if let Some(ordering) = self.ordering {
            updated.ordering = ordering;
        }
        if let Some(schedule) = &self.retry_schedule {
            updated.retry_schedule = schedule.clone();
        }
        updated
    }
}

/// The stored form of a retry schedule.
pub(crate) fn schedule_json(schedule: Option<&RetrySchedule>) -> Option<String> {
    schedule.map(|s| {
        let millis: Vec<u64> = s
            .delays()
            .iter()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        serde_json::Value::from(millis).to_string()
    })
}

/// A stored retry schedule (`None` if unreadable: the caller reports corruption).
pub(crate) fn parse_schedule(text: &str) -> Option<RetrySchedule> {
    let millis: Vec<u64> = serde_json::from_str(text).ok()?;
    Some(RetrySchedule::from_trusted(
        millis.into_iter().map(Duration::from_millis).collect(),
    ))
}

/// Controls from their stored columns; `None` if a value is out of range.
pub(crate) fn from_columns(
    rate_limit: Option<i64>,
    max_concurrency: Option<i64>,
    ordering: &str,
    retry_schedule: Option<&str>,
) -> Option<EndpointControls> {
    let positive = |v: i64| u64::try_from(v).ok();
    Some(EndpointControls {
        rate_limit: match rate_limit {
            Some(v) => Some(RateLimit::new(positive(v)?).ok()?),
            None => None,
        },
        max_concurrency: match max_concurrency {
            Some(v) => Some(MaxConcurrency::new(positive(v)?).ok()?),
            None => None,
        },
        ordering: Ordering::parse(ordering).ok()?,
        retry_schedule: match retry_schedule {
            Some(text) => Some(parse_schedule(text)?),
            None => None,
        },
    })
}

/// The stored columns of controls: rate limit, max concurrency, ordering, schedule.
pub(crate) fn to_columns(controls: &EndpointControls) -> (Option<i64>, Option<i64>, &'static str, Option<String>) {
    (
        controls.rate_limit.map(|r| i64::from(r.per_second())),
        controls.max_concurrency.map(|m| i64::from(m.get())),
        controls.ordering.as_str(),
        schedule_json(controls.retry_schedule.as_ref()),
    )
}
