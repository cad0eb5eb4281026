//! Event types and the subscription patterns that select them.

use std::fmt;

use super::Invalid;

const MAX_EVENT_TYPE_LEN: usize = 128;
const MAX_PATTERNS: usize = 100;

/// An event type such as `batch.succeeded`: dot-separated segments of
/// ASCII letters, digits, `_` and `-`; at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.is_empty() || text.len() > MAX_EVENT_TYPE_LEN {
            return Err(Invalid::new(format!(
                "an event type must be 1 to {MAX_EVENT_TYPE_LEN} characters long"
            )));
        }
        if !text.split('.').all(is_valid_segment) {
            return Err(Invalid::new(
                "an event type is dot-separated segments of letters, digits, '_' and '-' (e.g. \"batch.succeeded\")",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An event ready to publish: its id, type and time, and the envelope
/// bytes every attempt sends. Build it with [`NewEvent::new`] (a producer's
/// `data`, verbatim) or [`NewEvent::from_data`] (an event Herald emits
/// itself: jobs' state changes, operational events), so every event in the
/// system has the one envelope below.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: super::EventId,
    pub event_type: EventType,
    pub timestamp: super::Timestamp,
    /// The exact bytes every attempt will send.
    pub payload: bytes::Bytes,
}

impl NewEvent {
    /// A fresh event whose `data` is `data`, byte for byte. `data` must be
    /// a JSON object's text (the API checks a producer's before calling).
    pub fn new(event_type: EventType, timestamp: super::Timestamp, data: &str) -> Self {
        let id = super::EventId::generate();
        let payload = envelope(id, &event_type, timestamp, data);
        Self {
            id,
            event_type,
            timestamp,
            payload: bytes::Bytes::from(payload),
        }
    }

    /// A fresh event whose `data` is `data` serialised (it must serialise
    /// to a JSON object: Herald's own payload structs do).
    pub fn from_data<T: serde::Serialize>(event_type: EventType, timestamp: super::Timestamp, data: &T) -> Self {
        // Serialising a plain struct of strings and numbers cannot fail;
        // should it, the event still goes out, with empty data.
        let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".to_owned());
        Self::new(event_type, timestamp, &data)
    }
}

/// The envelope every delivery sends: `{id, type, version, timestamp, data}`,
/// serialised once. `data` must be a JSON object's exact bytes; the other
/// parts are made of characters that need no JSON escaping (ids, validated
/// event types, RFC 3339 text), so nothing is re-encoded.
pub fn envelope(id: super::EventId, event_type: &EventType, timestamp: super::Timestamp, data: &str) -> String {
    format!(
        r#"{{"id":"{id}","type":"{event_type}","version":"v1","timestamp":"{}","data":{data}}}"#,
        timestamp.to_rfc3339()
    )
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_valid_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// What a webhook subscribes to: every event (`*`), every event under a
/// prefix (`batch.*` matches `batch.succeeded` and `batch.x.y`, not `batch`),
/// or one exact type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventPattern {
    All,
    Prefix(String),
    Exact(EventType),
}

impl EventPattern {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text == "*" {
            return Ok(Self::All);
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            let prefix = EventType::parse(prefix).map_err(|_| {
                Invalid::new(format!(
                    "\"{text}\" is not a valid pattern: the part before \".*\" must be an event type"
                ))
            })?;
            return Ok(Self::Prefix(format!("{prefix}.")));
        }
        EventType::parse(text).map(Self::Exact).map_err(|e| {
            Invalid::new(format!(
                "\"{text}\" is neither \"*\", a \"prefix.*\" pattern nor an event type: {e}"
            ))
        })
    }

    pub fn matches(&self, event_type: &EventType) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix_with_dot) => event_type.as_str().starts_with(prefix_with_dot.as_str()),
            Self::Exact(exact) => exact == event_type,
        }
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Prefix(prefix_with_dot) => write!(f, "{prefix_with_dot}*"),
            Self::Exact(exact) => f.write_str(exact.as_str()),
        }
    }
}

/// The non-empty, duplicate-free list of patterns a webhook subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedEvents(Vec<EventPattern>);

impl SubscribedEvents {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, Invalid> {
        if items.is_empty() {
            return Err(Invalid::new("subscribe to at least one event type (\"*\" for all)"));
        }
        if items.len() > MAX_PATTERNS {
            return Err(Invalid::new(format!("at most {MAX_PATTERNS} patterns per webhook")));
        }
        let mut patterns: Vec<EventPattern> = Vec::with_capacity(items.len());
        for item in items {
            let pattern = EventPattern::parse(item.as_ref())?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        Ok(Self(patterns))
    }

    pub fn matches(&self, event_type: &EventType) -> bool {
        self.0.iter().any(|pattern| pattern.matches(event_type))
    }

    /// Whether a pattern other than `*` matches: how Herald's own
    /// (operational) events select their recipients.
    pub fn names(&self, event_type: &EventType) -> bool {
        self.0
            .iter()
            .any(|pattern| *pattern != EventPattern::All && pattern.matches(event_type))
    }

    /// The patterns as strings, the form kept in storage and on the wire.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> EventType {
        EventType::parse(text).expect("valid event type")
    }

    #[test]
    fn event_types_are_validated() {
        for good in ["batch.succeeded", "a", "video.generated", "x-y.z_1"] {
            assert!(EventType::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "batch.",
            ".batch",
            "a..b",
            "has space",
            "ünï",
            "a*",
            &"a".repeat(129),
        ] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_exact_prefix_and_all() {
        let cases = [
            ("*", "batch.succeeded", true),
            ("batch.*", "batch.succeeded", true),
            ("batch.*", "batch.a.b", true),
            ("batch.*", "batch", false),
            ("batch.*", "batches.x", false),
            ("batch.succeeded", "batch.succeeded", true),
            ("batch.succeeded", "batch.failed", false),
        ];
        for (pattern, event_type, expected) in cases {
            let pattern = EventPattern::parse(pattern).expect("valid pattern");
            assert_eq!(
                pattern.matches(&event(event_type)),
                expected,
                "{pattern} vs {event_type}"
            );
        }
    }

    #[test]
    fn subscriptions_are_non_empty_and_deduplicated() {
        assert!(SubscribedEvents::parse::<&str>(&[]).is_err());
        assert!(SubscribedEvents::parse(&["batch.**"]).is_err());
        let subs = SubscribedEvents::parse(&["batch.*", "batch.*", "video.generated"]).expect("valid");
        assert_eq!(subs.to_strings(), vec!["batch.*", "video.generated"]);
    }
}
