//! `page_size` / `page_token` listing parameters and `next_page_token`.
//!
//! A page token is the opaque (base64url) form of the last id on the
//! previous page; listings are ordered by id, which is creation order.

use axum::extract::RawQuery;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::{ApiError, MAX_ECHO_CHARS, truncate};
use crate::store::{Page, PageRequest};

const DEFAULT_PAGE_SIZE: u32 = 50;
const MAX_PAGE_SIZE: u32 = 100;

/// Reads `page_size` (1–100, default 50) and `page_token`; rejects other parameters.
pub fn page_request(query: &RawQuery) -> Result<PageRequest, ApiError> {
    page_request_with(query, "page_size, page_token", |_, _| Ok(false))
}

/// Like [`page_request`], offering every other parameter to `other`, which
/// answers whether it took it; `expected` names every accepted parameter
/// for the error about an unknown one.
pub fn page_request_with(
    query: &RawQuery,
    expected: &str,
    mut other: impl FnMut(&str, &str) -> Result<bool, ApiError>,
) -> Result<PageRequest, ApiError> {
    let mut request = PageRequest {
        size: DEFAULT_PAGE_SIZE,
        after: None,
    };
    let Some(query) = query.0.as_deref() else {
        return Ok(request);
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "page_size" => {
                request.size = value
                    .parse()
                    .ok()
                    .filter(|size| (1..=MAX_PAGE_SIZE).contains(size))
                    .ok_or_else(|| {
                        ApiError::invalid("page_size", format!("must be a number from 1 to {MAX_PAGE_SIZE}"))
                    })?;
            }
            "page_token" if value.is_empty() => {}
            "page_token" => {
                let decoded = URL_SAFE_NO_PAD
                    .decode(value.as_bytes())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| ApiError::invalid("page_token", "not a page token from a previous response"))?;
                request.after = Some(decoded);
            }
            name => {
                if !other(name, value.as_ref())? {
                    return Err(ApiError::invalid(
                        truncate(name, MAX_ECHO_CHARS),
                        format!("unknown query parameter (expected {expected})"),
                    ));
                }
            }
        }
    }
    Ok(request)
}

/// The token for the page after `page`, if there may be one.
pub fn next_page_token<T>(page: &Page<T>) -> Option<String> {
    page.next_after
        .as_ref()
        .map(|after| URL_SAFE_NO_PAD.encode(after.as_bytes()))
}
