//! `?update_mask=a,b` on PATCH requests (Google's field-mask convention),
//! parsed once for every resource: which fields the request names, or
//! `None` when it names none and every field in the body changes.

use axum::extract::RawQuery;

use super::error::{ApiError, MAX_ECHO_CHARS, truncate};

/// The fields `?update_mask=` lists. Any other query parameter, or a mask
/// that lists nothing, is a 400; `example` shows a valid mask.
pub(super) fn fields(query: &RawQuery, example: &str) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = query.0.as_deref() else {
        return Ok(None);
    };
    let mut mask = None;
    for (name, text) in url::form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "update_mask" => mask = Some(text.into_owned()),
            other => {
                return Err(ApiError::invalid(
                    truncate(other, MAX_ECHO_CHARS),
                    "unknown query parameter (expected update_mask)",
                ));
            }
        }
    }
    let Some(mask) = mask else { return Ok(None) };
    let fields: Vec<String> = mask
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect();
    if fields.is_empty() {
        return Err(ApiError::invalid(
            "update_mask",
            format!("names no field: list the fields to change, e.g. update_mask={example}"),
        ));
    }
    Ok(Some(fields))
}
