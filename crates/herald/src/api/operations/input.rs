//! Parsing the operations API's inputs: the workers' verbs and their
//! bodies into domain commands, durations (`webhook_config` is
//! `api::job_webhook_config`'s, shared with batches).

use std::time::Duration;

use axum::extract::RawQuery;
use serde::Deserialize;

use super::super::error::{ApiError, echo};
use super::super::json;
use crate::domain::OperationId;
use crate::domain::operation::{Command, Operation, OperationError, OperationProgress, WorkerName};

/// A worker's lease when `:start` names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
const MAX_LEASE: Duration = Duration::from_secs(3600);
/// `:wait` without `timeout`.
const DEFAULT_WAIT: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    worker: String,
    #[serde(default)]
    lease_duration: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerBody {
    #[serde(default)]
    worker: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressBody {
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    percent: Option<f64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequireActionBody {
    #[serde(default)]
    worker: Option<String>,
    action: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    response: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    #[serde(default)]
    worker: Option<String>,
    error: ErrorBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i32>,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

/// The command a verb and its body ask for.
pub(super) fn command(verb: &str, raw: &[u8]) -> Result<Command, ApiError> {
    Ok(match verb {
        "start" => {
            let body: StartBody = json::parse(raw)?;
            let lease = match &body.lease_duration {
                None => DEFAULT_LEASE,
                Some(text) => parse_duration(text, "lease_duration")
                    .and_then(|d| within(d, Duration::from_secs(1), MAX_LEASE, "lease_duration"))?,
            };
            Command::Start {
                worker: WorkerName::parse(&body.worker).map_err(ApiError::invalid_field("worker"))?,
                lease,
            }
        }
        "heartbeat" => Command::Heartbeat {
            worker: worker(json::parse::<WorkerBody>(raw)?.worker)?,
        },
        "progress" => {
            let body: ProgressBody = json::parse(raw)?;
            Command::Progress {
                worker: worker(body.worker)?,
                progress: OperationProgress::new(body.percent, body.message.as_deref())
                    .map_err(ApiError::invalid_field("percent"))?,
            }
        }
        "requireAction" => {
            let body: RequireActionBody = json::parse(raw)?;
            Command::RequireAction {
                worker: worker(body.worker)?,
                action: serde_json::Value::Object(body.action),
            }
        }
        "resume" => {
            json::parse::<EmptyBody>(raw)?;
            Command::Resume
        }
        "complete" => {
            let body: CompleteBody = json::parse(raw)?;
            Command::Complete {
                worker: worker(body.worker)?,
                response: serde_json::Value::Object(body.response.unwrap_or_default()),
            }
        }
        "fail" => {
            let body: FailBody = json::parse(raw)?;
            Command::Fail {
                worker: worker(body.worker)?,
                error: OperationError::new(body.error.code.unwrap_or(OperationError::UNKNOWN), &body.error.message)
                    .map_err(ApiError::invalid_field("error"))?,
            }
        }
        "cancel" => {
            json::parse::<EmptyBody>(raw)?;
            Command::Cancel
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "no such method :{} on operations (expected :start, :heartbeat, :progress, :requireAction, \
                 :resume, :complete, :fail or :cancel)",
                echo(other)
            )));
        }
    })
}

fn worker(name: Option<String>) -> Result<Option<WorkerName>, ApiError> {
    name.map(|name| WorkerName::parse(&name).map_err(ApiError::invalid_field("worker")))
        .transpose()
}

pub(super) fn operation_id(text: &str) -> Result<OperationId, ApiError> {
    OperationId::parse(text).ok_or_else(|| ApiError::not_found("operation", text))
}

pub(super) fn found(operation: Option<Operation>, id: &str) -> Result<Operation, ApiError> {
    operation.ok_or_else(|| ApiError::not_found("operation", id))
}

/// A duration such as `30s`, `1.5s`, `24h`.
pub(super) fn parse_duration(text: &str, field: &str) -> Result<Duration, ApiError> {
    if let Some(seconds) = text.strip_suffix('s')
        && let Ok(seconds) = seconds.parse::<f64>()
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Ok(Duration::from_secs_f64(seconds.min(1e9)));
    }
    humantime::parse_duration(text)
        .map_err(|_| ApiError::invalid(field, "expected a duration such as \"30s\", \"5m\" or \"24h\""))
}

fn within(duration: Duration, min: Duration, max: Duration, field: &str) -> Result<Duration, ApiError> {
    if duration < min || duration > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "must be from {} to {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(duration)
}

/// `timeout` of `:wait` (default 30 s), cut to `max`: a wait must end
/// before the server's request timeout does.
pub(super) fn wait_timeout(query: &RawQuery, max: Duration) -> Result<Duration, ApiError> {
    let mut timeout = DEFAULT_WAIT;
    for (name, value) in url::form_urlencoded::parse(query.0.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "timeout" => timeout = parse_duration(&value, "timeout")?,
            other => {
                return Err(ApiError::invalid(
                    super::super::error::truncate(other, super::super::error::MAX_ECHO_CHARS),
                    "unknown query parameter (expected timeout)",
                ));
            }
        }
    }
    Ok(timeout.min(max))
}
