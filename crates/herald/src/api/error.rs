//! The one place errors become HTTP responses.
//!
//! Every error body is `{"error": {"code", "message", "field"?}}`. Client
//! mistakes are 4xx and name the offending field where there is one; a
//! database that cannot be used is 503 (retry later); 500 is reserved for
//! stored data that breaks an invariant, which is a bug.

use axum::Json;
use axum::http::StatusCode;
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
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
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
        Self::NotFound(format!("{what} {id:?} does not exist"))
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
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", None),
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
            StoreError::Unavailable(message) => {
                tracing::error!(%message, "storage unavailable");
                Self::Unavailable("storage is unavailable; retry later".into())
            }
            StoreError::Corrupt(message) => {
                tracing::error!(%message, "stored data is corrupt");
                Self::Internal("stored data is inconsistent; see the server log".into())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, field) = self.parts();
        let mut error = json!({ "code": code, "message": self.to_string() });
        if let Some(field) = field {
            error["field"] = json!(field);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}
