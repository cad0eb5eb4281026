//! OpenAI-compatible batches: statuses, the endpoints a batch may target,
//! the validation of one input line, and the rules every backend shares
//! (which status change announces which event, what a request's output
//! and error lines look like). No HTTP or SQL here.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::event::{EventType, NewEvent};
use super::job_webhook::JobWebhooks;
use super::{BatchId, BatchRequestId, FileId, Invalid, Timestamp};

/// A batch's status, exactly as OpenAI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [Self; 8] = [
        Self::Validating,
        Self::Failed,
        Self::InProgress,
        Self::Finalizing,
        Self::Completed,
        Self::Expired,
        Self::Cancelling,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validating => "validating",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
            Self::Finalizing => "finalizing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// Whether nothing will change this batch again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Completed | Self::Expired | Self::Cancelled)
    }

    /// The event announcing a change to this status; statuses a batch only
    /// passes through (`validating`, `finalizing`, `cancelling`) have none,
    /// as in OpenAI's event list.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Self::InProgress => Some("batch.in_progress"),
            Self::Completed => Some("batch.completed"),
            Self::Failed => Some("batch.failed"),
            Self::Cancelled => Some("batch.cancelled"),
            Self::Expired => Some("batch.expired"),
            Self::Validating | Self::Finalizing | Self::Cancelling => None,
        }
    }
}

/// The endpoints a batch may target (OpenAI's list).
pub const ENDPOINTS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
];

/// A validated `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEndpoint(&'static str);

impl BatchEndpoint {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        ENDPOINTS
            .into_iter()
            .find(|known| *known == text)
            .map(Self)
            .ok_or_else(|| Invalid::new(format!("must be one of {}", ENDPOINTS.join(", "))))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

/// The longest (and default) completion window.
pub const MAX_COMPLETION_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A `completion_window` such as `24h`: from one minute to 24 hours.
pub fn parse_completion_window(text: &str) -> Result<Duration, Invalid> {
    let window = humantime::parse_duration(text).map_err(|_| Invalid::new("must be a duration such as \"24h\""))?;
    if window < Duration::from_secs(60) || window > MAX_COMPLETION_WINDOW {
        return Err(Invalid::new("must be between 1m and 24h"));
    }
    Ok(window)
}

/// The window as the API shows it (`24h`).
pub fn format_completion_window(window: Duration) -> String {
    let seconds = window.as_secs();
    if seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// One validation error, naming the line (1-based) and field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

impl BatchError {
    pub fn new(code: &str, message: impl Into<String>, param: Option<&str>, line: Option<u64>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
            param: param.map(str::to_owned),
            line,
        }
    }
}

/// Validation stops collecting after this many errors.
pub const MAX_VALIDATION_ERRORS: usize = 10;

/// A batch as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub project_id: super::ProjectId,
    pub input_file_id: FileId,
    pub endpoint: String,
    pub completion_window: Duration,
    pub status: BatchStatus,
    /// Increases with every event this batch publishes.
    pub sequence: u64,
    pub counts: RequestCounts,
    pub errors: Vec<BatchError>,
    /// The batch's `metadata`: a JSON object's text (or `null`).
    pub metadata: String,
    pub output_file_id: Option<FileId>,
    pub error_file_id: Option<FileId>,
    pub created_at: Timestamp,
    pub in_progress_at: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub finalizing_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub failed_at: Option<Timestamp>,
    pub expired_at: Option<Timestamp>,
    pub cancelling_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    /// `webhook_config`: where the batch's events go besides (or instead
    /// of) the project's webhooks; `None` for project webhooks only.
    pub webhooks: Option<BatchWebhooks>,
}

/// A batch's per-job webhooks, as stored with it (the `webhook_config`
/// column, this type's JSON): the rows and mode (see
/// [`JobWebhooks::recipients`]) and the `user_metadata` every event of the
/// batch carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchWebhooks {
    pub job: JobWebhooks,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_metadata: Option<serde_json::Value>,
}

impl BatchWebhooks {
    /// The stored text of `webhooks` (SQL `NULL` for none).
    pub fn to_column(webhooks: Option<&Self>) -> Option<String> {
        webhooks.map(|w| serde_json::to_string(w).unwrap_or_else(|_| unreachable!("plain JSON types serialize")))
    }

    /// Reads the stored text back (`None`: not this type, i.e. corrupt).
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The job rows' recipients rule, for the publish seams.
    pub fn job_of(batch: &Batch) -> Option<&JobWebhooks> {
        batch.webhooks.as_ref().map(|w| &w.job)
    }
}

/// `data` of a batch event: thin, ids and counts, never results.
#[derive(Serialize)]
struct BatchEventData<'a> {
    id: BatchId,
    status: &'static str,
    sequence: u64,
    request_counts: RequestCounts,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_file_id: Option<FileId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_file_id: Option<FileId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<ErrorList<'a>>,
    metadata: &'a RawValue,
    /// `webhook_config.user_metadata`, when the batch has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_metadata: Option<&'a serde_json::Value>,
}

/// OpenAI's `errors` shape: `{object: "list", data: [...]}`.
#[derive(Serialize)]
pub struct ErrorList<'a> {
    pub object: &'static str,
    pub data: &'a [BatchError],
}

impl<'a> ErrorList<'a> {
    pub fn of(errors: &'a [BatchError]) -> Option<Self> {
        (!errors.is_empty()).then_some(Self {
            object: "list",
            data: errors,
        })
    }
}

/// The event announcing `batch`'s current status (whose `sequence` must
/// already count it), or `None` for a status without one. Both backends
/// call this in the transaction that changes the status.
pub fn status_event(batch: &Batch, now: Timestamp) -> Option<NewEvent> {
    event_of(batch, batch.status.event_type()?, now)
}

fn event_of(batch: &Batch, event_type: &str, now: Timestamp) -> Option<NewEvent> {
    let event_type = EventType::parse(event_type).ok()?;
    let null = RawValue::NULL;
    let metadata = serde_json::from_str::<&RawValue>(&batch.metadata).unwrap_or(null);
    let data = BatchEventData {
        id: batch.id,
        status: batch.status.as_str(),
        sequence: batch.sequence,
        request_counts: batch.counts,
        output_file_id: batch.output_file_id,
        error_file_id: batch.error_file_id,
        errors: ErrorList::of(&batch.errors),
        metadata,
        user_metadata: batch.webhooks.as_ref().and_then(|w| w.user_metadata.as_ref()),
    };
    Some(NewEvent::from_data(event_type, now, &data))
}

/// The throttled `batch.progress` event of a running batch (whose
/// `sequence` must already count it).
pub fn progress_event(batch: &Batch, now: Timestamp) -> Option<NewEvent> {
    event_of(batch, "batch.progress", now)
}

/// Limits a line is checked against.
#[derive(Debug, Clone, Copy)]
pub struct LineLimits {
    pub max_line_bytes: usize,
}

/// A valid input line: what to send, and which model serves it.
#[derive(Debug, Clone)]
pub struct ParsedLine {
    pub custom_id: String,
    pub model: String,
    /// The request body's exact bytes.
    pub body: Vec<u8>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine<'a> {
    #[serde(borrow)]
    custom_id: Option<&'a RawValue>,
    method: Option<String>,
    url: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct BodyModel {
    model: Option<serde_json::Value>,
}

const MAX_CUSTOM_ID_CHARS: usize = 512;

/// Checks one input line (`line` is 1-based) against the batch's endpoint.
/// Every error names the line and the field, as OpenAI's do.
pub fn parse_line(line: u64, text: &[u8], endpoint: &str, limits: LineLimits) -> Result<ParsedLine, BatchError> {
    let fail = |code: &str, message: String, param: Option<&str>| BatchError::new(code, message, param, Some(line));
    if text.len() > limits.max_line_bytes {
        return Err(fail(
            "request_too_large",
            format!(
                "the line is {} bytes; the limit is {}",
                text.len(),
                limits.max_line_bytes
            ),
            None,
        ));
    }
    let input: InputLine<'_> = serde_json::from_slice(text)
        .map_err(|e| fail("invalid_json_line", format!("not a valid JSON object: {e}"), None))?;
    let custom_id = match input.custom_id.map(|raw| serde_json::from_str::<String>(raw.get())) {
        Some(Ok(id)) if !id.is_empty() && id.chars().count() <= MAX_CUSTOM_ID_CHARS => id,
        Some(_) => {
            return Err(fail(
                "invalid_custom_id",
                format!("custom_id must be a string of 1 to {MAX_CUSTOM_ID_CHARS} characters"),
                Some("custom_id"),
            ));
        }
        None => {
            return Err(fail(
                "missing_required_parameter",
                "custom_id is required".into(),
                Some("custom_id"),
            ));
        }
    };
    match input.method.as_deref() {
        Some("POST") => {}
        Some(other) => {
            return Err(fail(
                "invalid_method",
                format!("method must be POST, not {other:?}"),
                Some("method"),
            ));
        }
        None => {
            return Err(fail(
                "missing_required_parameter",
                "method is required".into(),
                Some("method"),
            ));
        }
    }
    match input.url.as_deref() {
        Some(url) if url == endpoint => {}
        Some(url) if ENDPOINTS.contains(&url) => {
            return Err(fail(
                "mismatched_endpoint",
                format!("url {url:?} differs from the batch's endpoint {endpoint:?}"),
                Some("url"),
            ));
        }
        Some(url) => return Err(fail("invalid_url", format!("unknown url {url:?}"), Some("url"))),
        None => {
            return Err(fail(
                "missing_required_parameter",
                "url is required".into(),
                Some("url"),
            ));
        }
    }
    let Some(body) = input.body.filter(|raw| raw.get().starts_with('{')) else {
        return Err(fail(
            "missing_required_parameter",
            "body must be a JSON object".into(),
            Some("body"),
        ));
    };
    let model = match serde_json::from_str::<BodyModel>(body.get()).map(|b| b.model) {
        Ok(Some(serde_json::Value::String(model))) if !model.is_empty() => model,
        _ => {
            return Err(fail(
                "missing_required_parameter",
                "body.model must be a non-empty string".into(),
                Some("body.model"),
            ));
        }
    };
    Ok(ParsedLine {
        custom_id,
        model,
        body: body.get().as_bytes().to_vec(),
    })
}

/// What became of one request.
#[derive(Debug, Clone)]
pub enum RequestResult {
    /// The upstream answered 2xx with a JSON body: an output line.
    Succeeded {
        status_code: u16,
        request_id: String,
        body: Vec<u8>,
    },
    /// A final non-2xx answer: an error line keeping the answer.
    Refused {
        status_code: u16,
        request_id: String,
        body: Vec<u8>,
    },
    /// No usable answer (connection, timeout, garbage, tries exhausted).
    Errored { code: String, message: String },
}

impl RequestResult {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }
}

#[derive(Serialize)]
struct OutputLine<'a> {
    id: BatchRequestId,
    custom_id: &'a str,
    response: Option<ResponsePart<'a>>,
    error: Option<ErrorPart<'a>>,
}

#[derive(Serialize)]
struct ResponsePart<'a> {
    status_code: u16,
    request_id: &'a str,
    body: &'a RawValue,
}

#[derive(Serialize)]
struct ErrorPart<'a> {
    code: &'a str,
    message: &'a str,
}

/// The line a request contributes to its batch's output (success) or
/// error file: `{id, custom_id, response: {status_code, request_id, body},
/// error}`, newline-terminated. A body that is not JSON is kept as a
/// JSON string.
pub fn result_line(custom_id: &str, result: &RequestResult) -> Vec<u8> {
    let id = BatchRequestId::generate();
    let as_json = |body: &[u8]| -> Box<RawValue> {
        std::str::from_utf8(body)
            .ok()
            .and_then(|text| RawValue::from_string(text.to_owned()).ok())
            .or_else(|| {
                let text = String::from_utf8_lossy(body).into_owned();
                serde_json::value::to_raw_value(&text).ok()
            })
            .unwrap_or_else(|| RawValue::NULL.to_owned())
    };
    let line = match result {
        RequestResult::Succeeded {
            status_code,
            request_id,
            body,
        }
        | RequestResult::Refused {
            status_code,
            request_id,
            body,
        } => {
            let body = as_json(body);
            let refused = matches!(result, RequestResult::Refused { .. });
            let message = format!("the upstream answered {status_code}");
            serde_json::to_vec(&OutputLine {
                id,
                custom_id,
                response: Some(ResponsePart {
                    status_code: *status_code,
                    request_id,
                    body: &body,
                }),
                error: refused.then_some(ErrorPart {
                    code: "upstream_error",
                    message: &message,
                }),
            })
        }
        RequestResult::Errored { code, message } => serde_json::to_vec(&OutputLine {
            id,
            custom_id,
            response: None,
            error: Some(ErrorPart { code, message }),
        }),
    };
    let mut line = line.unwrap_or_default();
    line.push(b'\n');
    line
}

/// The error line of a request the batch's window closed on.
pub fn expired_line(custom_id: &str) -> Vec<u8> {
    result_line(
        custom_id,
        &RequestResult::Errored {
            code: "batch_expired".into(),
            message: "this request was not executed before the batch's completion window ended".into(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: LineLimits = LineLimits { max_line_bytes: 1024 };

    fn check(text: &str) -> Result<String, (String, Option<String>)> {
        parse_line(3, text.as_bytes(), "/v1/chat/completions", LIMITS)
            .map(|parsed| parsed.model)
            .map_err(|e| {
                assert_eq!(e.line, Some(3));
                (e.code, e.param)
            })
    }

    #[test]
    fn lines_are_checked_field_by_field() {
        let good = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#;
        assert_eq!(check(good), Ok("m".into()));
        let cases = [
            ("{", "invalid_json_line", None),
            (
                r#"{"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#,
                "missing_required_parameter",
                Some("custom_id"),
            ),
            (
                r#"{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}"#,
                "invalid_custom_id",
                Some("custom_id"),
            ),
            (
                r#"{"custom_id":"a","method":"GET","url":"/v1/chat/completions","body":{"model":"m"}}"#,
                "invalid_method",
                Some("method"),
            ),
            (
                r#"{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{"model":"m"}}"#,
                "mismatched_endpoint",
                Some("url"),
            ),
            (
                r#"{"custom_id":"a","method":"POST","url":"/v2/x","body":{"model":"m"}}"#,
                "invalid_url",
                Some("url"),
            ),
            (
                r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}"#,
                "missing_required_parameter",
                Some("body.model"),
            ),
            (
                r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":[1]}"#,
                "missing_required_parameter",
                Some("body"),
            ),
        ];
        for (text, code, param) in cases {
            assert_eq!(check(text), Err((code.to_owned(), param.map(str::to_owned))), "{text}");
        }
        let long = format!(r#"{{"custom_id":"{}"}}"#, "x".repeat(2000));
        assert_eq!(check(&long), Err(("request_too_large".into(), None)));
    }

    #[test]
    fn result_lines_keep_the_body_verbatim() {
        let line = result_line(
            "c1",
            &RequestResult::Succeeded {
                status_code: 200,
                request_id: "r".into(),
                body: br#"{"b": 1}"#.to_vec(),
            },
        );
        let text = String::from_utf8(line).unwrap();
        assert!(text.ends_with("\n"));
        assert!(text.contains(r#""body":{"b": 1}"#), "{text}");
        assert!(text.contains(r#""error":null"#), "{text}");
        let garbage = result_line(
            "c2",
            &RequestResult::Refused {
                status_code: 500,
                request_id: "r".into(),
                body: b"<html>".to_vec(),
            },
        );
        let value: serde_json::Value = serde_json::from_slice(&garbage).unwrap();
        assert_eq!(value["response"]["body"], "<html>");
        assert_eq!(value["error"]["code"], "upstream_error");
    }

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_completion_window("24h"), Ok(MAX_COMPLETION_WINDOW));
        assert!(parse_completion_window("25h").is_err());
        assert!(parse_completion_window("soon").is_err());
        assert_eq!(format_completion_window(MAX_COMPLETION_WINDOW), "24h");
        assert_eq!(format_completion_window(Duration::from_secs(90 * 60)), "90m");
    }
}
