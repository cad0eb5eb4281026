//! The one place errors become HTTP responses.
//!
//! Every error body is `{"error": {"code", "message", "field"?}}`. Client
//! mistakes are 4xx and name the offending field where there is one; a
//! database that cannot be used is 503 (retry later); 500 is reserved for
//! stored data that breaks an invariant, which is a bug.
//!
//! Echoed client input is cut to [`MAX_ECHO_CHARS`] (and whole messages and
//! field names to a bound), so a huge unknown key or path cannot make the
//! error larger than a few kilobytes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::Invalid;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidArgument { field: Option<String>, message: String },
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    /// The request would pass a configured limit (the message names it);
    /// retrying the same request will not help.
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A request the HTTP layer could not parse (bad method, header, version).
    #[error("{0}")]
    MalformedRequest(String),
    /// Over a rate limit; retry after the given whole seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A domain validation failure of the wire field `field`.
    pub fn invalid_field(field: impl Into<String>) -> impl FnOnce(Invalid) -> Self {
        let field = field.into();
        move |invalid| Self::invalid(field, invalid.message)
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::NotFound(format!("{what} {} does not exist", echo(id)))
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The JSON error body, `{"error": {code, message, field?}}`.
    pub fn body(&self) -> Vec<u8> {
        let (_, code, field) = self.parts();
        let mut error = json!({ "code": code, "message": truncate(&self.to_string(), MAX_MESSAGE_CHARS) });
        if let Some(field) = field {
            error["field"] = json!(truncate(field, MAX_ECHO_CHARS));
        }
        serde_json::to_vec(&json!({ "error": error })).unwrap_or_default()
    }

    fn parts(&self) -> (StatusCode, &'static str, Option<&str>) {
        match self {
            Self::InvalidArgument { field, .. } => (StatusCode::BAD_REQUEST, "invalid_argument", field.as_deref()),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json", None),
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            Self::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied", None),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            Self::LimitExceeded(_) => (StatusCode::CONFLICT, "limit_exceeded", None),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
            Self::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout", None),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long", None),
            Self::HeadersTooLarge(_) => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", None),
            Self::MalformedRequest(_) => (StatusCode::BAD_REQUEST, "malformed_request", None),
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound("the referenced resource does not exist".into()),
            StoreError::IdempotencyConflict => Self::Conflict(
                "this Idempotency-Key was already used with a different request body; use a new key".into(),
            ),
            StoreError::LimitExceeded(message) => Self::LimitExceeded(message),
            StoreError::Unavailable(message) => {
                tracing::error!(%message, "storage unavailable");
                Self::Unavailable("storage is unavailable; retry later".into())
            }
            StoreError::Corrupt(message) => {
                tracing::error!(%message, "stored data is corrupt");
                Self::Internal("stored data is inconsistent; see the server log".into())
            }
            StoreError::MasterKey(message) => {
                tracing::error!(%message, "signing secrets cannot be opened");
                Self::Internal("this node cannot open signing secrets; see the server log".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            self.body(),
        )
            .into_response();
        match self {
            Self::TooManyRequests { retry_after_secs, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
            }
            // The store cannot commit right now (database restarting, disk
            // full): nothing was acknowledged; a client may retry shortly.
            Self::Unavailable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
            }
            _ => {}
        }
        response
    }
}

/// What a 503 asks clients to wait before retrying.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// Most characters of client input repeated in an error.
pub const MAX_ECHO_CHARS: usize = 128;
/// Most characters of a whole error message.
const MAX_MESSAGE_CHARS: usize = 1024;

/// `text` cut to `max` characters, marked with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// Client input to repeat in a message: cut to [`MAX_ECHO_CHARS`] and quoted.
pub fn echo(text: &str) -> String {
    format!("{:?}", truncate(text, MAX_ECHO_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_input_is_bounded() {
        assert_eq!(truncate("short", 128), "short");
        assert_eq!(truncate("ééé", 2), "éé…");
        let huge = "k".repeat(1_000_000);
        let body = ApiError::invalid(huge.clone(), format!("unknown field `{huge}`")).body();
        assert!(body.len() < 2048, "{} bytes", body.len());
        assert_eq!(echo(&huge).chars().count(), MAX_ECHO_CHARS + 3);
    }
}
