//! What `herald listen` prints for each delivery: one line with the time,
//! the event type, the webhook-id, the verdict and the answer, then the
//! pretty-printed JSON body of verified messages.
//!
//! Everything shown comes from the network, so it is sanitised: control
//! characters are replaced and fields are truncated, so a request cannot
//! rewrite the terminal.

use std::io::Write as _;

use axum::http::{HeaderMap, StatusCode};
use herald_signature::WEBHOOK_ID;
use time::OffsetDateTime;
use time::macros::format_description;

/// Longest event type or id printed, in characters.
const MAX_FIELD_CHARS: usize = 80;

/// One received request, as printed.
pub struct Delivery {
    /// `webhook-id` header, sanitised; `-` when absent.
    id: String,
    /// The body's JSON `type`, sanitised; `-` when absent or not JSON.
    event_type: String,
    /// The body pretty-printed, or a note saying why it cannot be.
    body: String,
}

impl Delivery {
    pub fn new(headers: &HeaderMap, body: &[u8]) -> Self {
        let id = headers.get(WEBHOOK_ID).map_or_else(
            || "-".to_owned(),
            |value| sanitise(&String::from_utf8_lossy(value.as_bytes())),
        );
        let json = serde_json::from_slice::<serde_json::Value>(body).ok();
        let event_type = json
            .as_ref()
            .and_then(|value| value.get("type"))
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| "-".to_owned(), sanitise);
        let body = match (&json, std::str::from_utf8(body)) {
            // Valid JSON: re-indented as sent, members in their original order.
            (Some(_), Ok(text)) => pretty_json(text),
            _ => format!("(body is not JSON, {} bytes)", body.len()),
        };
        Self { id, event_type, body }
    }

    /// Prints the summary line, and the body when `show_body`, in one write.
    pub fn print(&self, verdict: &str, status: StatusCode, show_body: bool) {
        let time = OffsetDateTime::now_utc()
            .format(format_description!("[hour]:[minute]:[second]Z"))
            .unwrap_or_default();
        // The verdict may quote the request (an alg, an audience): no control characters.
        let verdict: String = verdict
            .chars()
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        let mut text = format!("{time}  {}  {}  {verdict}  -> {status}\n", self.event_type, self.id);
        if show_body {
            for line in self.body.lines() {
                text.push_str("    ");
                text.push_str(line);
                text.push('\n');
            }
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout must not take the receiver down.
        let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    }
}

/// Indents a valid JSON text by two spaces per level without reordering or
/// re-encoding anything: only whitespace outside strings changes. JSON
/// strings may hold raw DEL and C1 characters (U+009B starts a terminal
/// escape sequence), so control characters inside strings are replaced.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(if c.is_control() { '\u{fffd}' } else { c });
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // Keep empty containers compact.
                while chars.peek().is_some_and(|next| next.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|&next| next == '}' || next == ']') {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                if !out.ends_with(['{', '[']) {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Replaces control characters (terminal escapes) with U+FFFD.
pub(in crate::cli) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Replaces control characters and truncates to [`MAX_FIELD_CHARS`].
fn sanitise(text: &str) -> String {
    let mut clean: String = text
        .chars()
        .take(MAX_FIELD_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_FIELD_CHARS).is_some() {
        clean.push('…');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::{pretty_json, sanitise};

    #[test]
    fn json_is_indented_in_its_original_order() {
        let pretty =
            pretty_json(r#" {"type":"batch.succeeded","data":{"id":"b,1:\"x\"","list":[1, 2],"empty":{},"none":[ ]}}"#);
        let expected = r#"{
  "type": "batch.succeeded",
  "data": {
    "id": "b,1:\"x\"",
    "list": [
      1,
      2
    ],
    "empty": {},
    "none": []
  }
}"#;
        assert_eq!(pretty, expected);
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(sanitise("batch.succeeded"), "batch.succeeded");
        assert_eq!(sanitise("a\x1b[2Jb\n"), "a\u{fffd}[2Jb\u{fffd}");
        assert_eq!(sanitise(&"x".repeat(100)).chars().count(), 81);
        let pretty = pretty_json("{\"a\":\"\u{9b}2J\u{7f}\"}");
        assert!(
            !pretty.chars().filter(|c| *c != '\n').any(char::is_control),
            "{pretty:?}"
        );
        assert!(pretty.contains("\u{fffd}2J\u{fffd}"), "{pretty:?}");
    }
}
