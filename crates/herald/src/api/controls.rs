//! The wire form of a webhook's per-endpoint controls
//! (`rate_limit_per_second`, `max_concurrency`, `ordering`,
//! `retry_schedule`): parsed here into `domain::controls`, which
//! validates them; `null` means "none" (and, in a PATCH, clears).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use crate::domain::Invalid;
use crate::domain::controls::{EndpointControls, MaxConcurrency, Ordering, RateLimit, RetrySchedule};
use crate::store::controls::ControlsPatch;

/// The four fields as sent; each `None` when absent.
#[derive(Default)]
pub(super) struct ControlsInput {
    pub rate_limit_per_second: Option<Value>,
    pub max_concurrency: Option<Value>,
    pub ordering: Option<Value>,
    pub retry_schedule: Option<Value>,
}

/// For a create: absent and `null` both mean "none".
pub(super) fn for_create(input: &ControlsInput, window: Duration) -> Result<EndpointControls, ApiError> {
    let patch = for_patch(input, window)?;
    Ok(patch.applied_to(&EndpointControls::default()))
}

/// For a PATCH: absent leaves a control as it is, `null` clears it.
pub(super) fn for_patch(input: &ControlsInput, window: Duration) -> Result<ControlsPatch, ApiError> {
    Ok(ControlsPatch {
        rate_limit: input
            .rate_limit_per_second
            .as_ref()
            .map(|v| nullable(v, "rate_limit_per_second", RateLimit::new))
            .transpose()?,
        max_concurrency: input
            .max_concurrency
            .as_ref()
            .map(|v| nullable(v, "max_concurrency", MaxConcurrency::new))
            .transpose()?,
        ordering: input.ordering.as_ref().map(ordering).transpose()?,
        retry_schedule: input
            .retry_schedule
            .as_ref()
            .map(|v| retry_schedule(v, window))
            .transpose()?,
    })
}

/// A positive integer or `null`; the domain's bounds name the range.
fn nullable<T>(value: &Value, field: &str, make: impl Fn(u64) -> Result<T, Invalid>) -> Result<Option<T>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    // Not a non-negative integer: the same answer as one out of range.
    make(value.as_u64().unwrap_or(0))
        .map(Some)
        .map_err(ApiError::invalid_field(field))
}

fn ordering(value: &Value) -> Result<Ordering, ApiError> {
    match value {
        // `null`: back to the default.
        Value::Null => Ok(Ordering::None),
        Value::String(text) => Ordering::parse(text).map_err(ApiError::invalid_field("ordering")),
        _ => Err(ApiError::invalid("ordering", "must be \"none\" or \"fifo\"")),
    }
}

fn retry_schedule(value: &Value, window: Duration) -> Result<Option<RetrySchedule>, ApiError> {
    let items = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid(
                "retry_schedule",
                "must be a list of durations such as [\"10s\", \"5m\", \"2h\"], or null",
            ));
        }
    };
    let mut delays = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let delay = item
            .as_str()
            .and_then(|text| humantime::parse_duration(text).ok())
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("retry_schedule[{index}]"),
                    "must be a duration such as \"10s\", \"5m\" or \"2h\"",
                )
            })?;
        delays.push(delay);
    }
    RetrySchedule::new(delays, window)
        .map(Some)
        .map_err(ApiError::invalid_field("retry_schedule"))
}

/// The controls as a webhook shows them (every field present, `null` when unset).
#[derive(Serialize)]
pub(super) struct ControlsView {
    rate_limit_per_second: Option<u32>,
    max_concurrency: Option<u32>,
    ordering: &'static str,
    retry_schedule: Option<Vec<String>>,
}

impl ControlsView {
    pub(super) fn new(controls: &EndpointControls) -> Self {
        Self {
            rate_limit_per_second: controls.rate_limit.map(RateLimit::per_second),
            max_concurrency: controls.max_concurrency.map(MaxConcurrency::get),
            ordering: controls.ordering.as_str(),
            retry_schedule: controls.retry_schedule.as_ref().map(|s| {
                s.delays()
                    .iter()
                    .map(|d| humantime::format_duration(*d).to_string())
                    .collect()
            }),
        }
    }
}
