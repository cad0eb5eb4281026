//! Reading JSON request bodies, with errors that name the field.
//!
//! [`JsonBody`] keeps the raw bytes beside the parsed value: events store
//! the exact bytes of `data`, and idempotency compares request bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use serde::de::DeserializeOwned;

use super::error::{ApiError, MAX_ECHO_CHARS, truncate};

pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_body(request, state).await?;
        let value = parse(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Like [`JsonBody`], but an empty body means `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let raw = read_body(request, state).await?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse(&raw).map(Self)
    }
}

/// The body bytes, if the content type (when given) is JSON, no content
/// encoding is applied, the size is within the router's limit and the body
/// does not stall (the server's body timeout: 408).
pub(super) async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    // Herald does not decompress: an encoded body would otherwise be
    // misreported as invalid JSON.
    if let Some(encoding) = request.headers().get(CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {} is not supported: send the body uncompressed",
            super::error::echo(&String::from_utf8_lossy(encoding.as_bytes()))
        )));
    }
    if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .ok()
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as JSON (content-type: application/json)".into(),
            ));
        }
    }
    Bytes::from_request(request, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is larger than limits.max_request_bytes".into())
        } else if caused_by::<tower_http::timeout::TimeoutError>(&rejection) {
            // The body never arrived, so the request cannot take effect.
            ApiError::RequestTimeout("the request body stopped arriving (http.request_body_timeout)".into())
        } else {
            ApiError::InvalidJson(format!("cannot read the request body: {rejection}"))
        }
    })
}

/// Whether an `E` is somewhere in `error`'s chain of causes.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<E>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Parses `raw` as `T`; a type or shape error names its JSON path.
pub fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = truncate(&error.path().to_string(), MAX_ECHO_CHARS);
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidJson(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            let message = shorten_quoted(&inner.to_string());
            ApiError::InvalidArgument {
                field: missing_field(&message),
                message,
            }
        } else {
            ApiError::invalid(path, shorten_quoted(&inner.to_string()))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::InvalidJson(format!("unexpected data after the JSON value: {e}")))?;
    Ok(value)
}

/// serde quotes the client's keys and values in backticks: cut each to
/// [`MAX_ECHO_CHARS`] so that the rest of the message survives.
fn shorten_quoted(message: &str) -> String {
    let mut shortened = String::with_capacity(message.len().min(1024));
    for (index, part) in message.split('`').enumerate() {
        if index > 0 {
            shortened.push('`');
        }
        if index % 2 == 1 {
            shortened.push_str(&truncate(part, MAX_ECHO_CHARS));
        } else {
            shortened.push_str(part);
        }
    }
    shortened
}

/// serde names the field in "missing field `name`" and "duplicate field `name`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("duplicate field `"))?;
    rest.split('`').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        items: Vec<u32>,
    }

    fn field_of(raw: &str) -> Option<String> {
        match parse::<Sample>(raw.as_bytes()) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("expected an invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of(r#"{"name": 5, "items": []}"#).as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "x", "items": [1, "two"]}"#).as_deref(),
            Some("items[1]")
        );
        assert!(matches!(parse::<Sample>(b"{not json"), Err(ApiError::InvalidJson(_))));
        assert!(matches!(
            parse::<Sample>(br#"{"name":"x","items":[]} trailing"#),
            Err(ApiError::InvalidJson(_))
        ));
        assert_eq!(field_of(r#"{"name":"x"}"#).as_deref(), Some("items"));
        assert_eq!(
            field_of(r#"{"name":"x","items":[],"extra":1}"#).as_deref(),
            Some("extra")
        );
    }

    #[test]
    fn a_huge_unknown_key_is_cut_and_the_expected_fields_still_named() {
        let raw = format!(r#"{{"name":"x","items":[],"{}":1}}"#, "k".repeat(1_000_000));
        let Err(ApiError::InvalidArgument { field, message }) = parse::<Sample>(raw.as_bytes()) else {
            panic!("expected an invalid argument");
        };
        assert!(field.is_some_and(|f| f.chars().count() <= MAX_ECHO_CHARS + 1));
        assert!(message.len() < 512, "{message}");
        assert!(message.contains("expected `name` or `items`"), "{message}");
    }
}
