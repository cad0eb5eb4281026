//! Checks on event `data` that serde does not make when it keeps the
//! producer's bytes verbatim (`RawValue` skips over values): a nesting
//! depth limit and well-formed `\u` escapes. Receivers' parsers (and
//! `herald listen`) reject deeper documents and lone surrogates, so Herald
//! refuses them at publish rather than deliver what cannot be read.
//!
//! The input is already known to be syntactically valid JSON; this is one
//! linear pass with an explicit stack (no recursion, whatever the depth).

use super::error::{ApiError, truncate};

/// Deepest nesting of objects and arrays in `data`, counting `data` itself.
pub const MAX_DATA_DEPTH: usize = 128;

enum Frame {
    Object { key: Option<String>, expect_key: bool },
    Array { index: usize },
}

/// Refuses `raw` (valid JSON) if it nests deeper than [`MAX_DATA_DEPTH`] or
/// holds an invalid `\u` escape; the error names the JSON path under `root`.
pub fn check_data(raw: &[u8], root: &str) -> Result<(), ApiError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'"' => {
                let (text, end) = read_string(raw, i).map_err(|()| {
                    ApiError::invalid(
                        path(root, &stack),
                        "invalid \\u escape: a lone UTF-16 surrogate is not a character (pair \\uD800-\\uDBFF with \\uDC00-\\uDFFF)",
                    )
                })?;
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut()
                    && *expect_key
                {
                    *key = Some(text);
                    *expect_key = false;
                }
                i = end;
                continue;
            }
            open @ (b'{' | b'[') => {
                if stack.len() >= MAX_DATA_DEPTH {
                    return Err(ApiError::invalid(
                        path(root, &stack),
                        format!("data nests deeper than {MAX_DATA_DEPTH} levels of objects and arrays"),
                    ));
                }
                stack.push(if open == b'{' {
                    Frame::Object {
                        key: None,
                        expect_key: true,
                    }
                } else {
                    Frame::Array { index: 0 }
                });
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The string starting at the quote at `start`: its raw text (escapes left
/// as written, enough to name a key) and the index after its closing quote.
/// Fails on an invalid `\u` escape.
fn read_string(raw: &[u8], start: usize) -> Result<(String, usize), ()> {
    let mut i = start + 1;
    while i < raw.len() {
        match raw[i] {
            b'"' => return Ok((String::from_utf8_lossy(&raw[start + 1..i]).into_owned(), i + 1)),
            b'\\' if raw.get(i + 1) == Some(&b'u') => {
                let unit = hex4(raw, i + 2)?;
                i += 6;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = if raw.get(i) == Some(&b'\\') && raw.get(i + 1) == Some(&b'u') {
                            hex4(raw, i + 2)?
                        } else {
                            return Err(());
                        };
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(());
                        }
                        i += 6;
                    }
                    0xDC00..=0xDFFF => return Err(()),
                    _ => {}
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Err(())
}

fn hex4(raw: &[u8], at: usize) -> Result<u16, ()> {
    let digits = raw.get(at..at + 4).ok_or(())?;
    let text = std::str::from_utf8(digits).map_err(|_| ())?;
    u16::from_str_radix(text, 16).map_err(|_| ())
}

fn path(root: &str, stack: &[Frame]) -> String {
    let mut path = root.to_owned();
    for frame in stack {
        match frame {
            Frame::Object { key: Some(key), .. } => {
                path.push('.');
                path.push_str(&truncate(key, 64));
            }
            Frame::Object { key: None, .. } => {}
            Frame::Array { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(raw: &str) -> Option<String> {
        match check_data(raw.as_bytes(), "data") {
            Ok(()) => None,
            Err(ApiError::InvalidArgument { field, .. }) => field,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn depth_is_limited_and_the_path_named() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(field_of(&format!(r#"{{"a":{}}}"#, nested(MAX_DATA_DEPTH - 1))), None);
        let field = field_of(&format!(r#"{{"a":{}}}"#, nested(MAX_DATA_DEPTH))).expect("refused");
        assert!(field.starts_with("data.a[0][0]"), "{field}");
        assert!(field_of(&format!(r#"{{"a":{}}}"#, nested(100_000))).is_some());
    }

    #[test]
    fn unicode_escapes_must_be_characters() {
        assert_eq!(
            field_of(r#"{"ok":"\ud83d\ude00 \u00e9 \\udc00 \"\udc00"}"#).as_deref(),
            Some("data.ok")
        );
        assert_eq!(field_of(r#"{"ok":"\ud83d\ude00 \u00e9 \\udc00"}"#), None);
        assert_eq!(field_of(r#"{"a":[1,{"b":"\udc00"}]}"#).as_deref(), Some("data.a[1].b"));
        assert_eq!(field_of(r#"{"a":"\ud800"}"#).as_deref(), Some("data.a"));
        assert_eq!(field_of(r#"{"a":"\ud800\u0041"}"#).as_deref(), Some("data.a"));
        assert_eq!(field_of(r#"{"\udc00":1}"#).as_deref(), Some("data"));
        assert_eq!(field_of(r#"{"x,y":{"z":"\udc00"}}"#).as_deref(), Some("data.x,y.z"));
    }
}
