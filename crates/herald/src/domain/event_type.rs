//! Registered event types: a description and an optional JSON Schema that
//! the `data` of every event of the type must satisfy.
//!
//! A schema is compiled (and checked against its meta-schema) when it is
//! created or patched, so an invalid schema never reaches the store.
//! Compilation resolves no remote `$ref` (no network, no files), and
//! `pattern` keywords use the linear-time `regex` engine, so a producer's
//! schema cannot make validation backtrack without bound.

use std::sync::Arc;

use super::Invalid;
use super::event::EventType;

/// The longest schema accepted, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// The longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// How many violations one refusal lists at most.
const MAX_VIOLATIONS_LISTED: usize = 5;

/// The types Herald emits itself: always known, whatever a project
/// registered (and never registrable).
const HERALD_PREFIXES: [&str; 4] = ["batch.", "operation.", "webhook.", "delivery."];

pub fn is_herald_own(event_type: &str) -> bool {
    HERALD_PREFIXES.iter().any(|prefix| event_type.starts_with(prefix))
}

/// A description: at most [`MAX_DESCRIPTION_CHARS`] characters, no control
/// characters but newlines and tabs.
pub fn parse_description(text: &str) -> Result<String, Invalid> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Invalid::new(format!(
            "a description is at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(Invalid::new("a description may not hold control characters"));
    }
    Ok(text.to_owned())
}

/// A compiled JSON Schema and the text it was compiled from (what the
/// store keeps and the API shows).
#[derive(Clone)]
pub struct EventSchema {
    text: String,
    validator: Arc<jsonschema::Validator>,
}

impl std::fmt::Debug for EventSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSchema").field("text", &self.text).finish()
    }
}

/// One way `data` breaks its type's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as `prefix.items[2].price` (the prefix names `data` itself).
    pub path: String,
    /// The rule broken, in the validator's words.
    pub rule: String,
}

impl EventSchema {
    /// Compiles a schema given as a JSON value: it must be an object, a
    /// valid schema under its `$schema` (draft 2020-12 by default), and no
    /// longer than [`MAX_SCHEMA_BYTES`].
    pub fn compile(schema: &serde_json::Value) -> Result<Self, Invalid> {
        if !schema.is_object() {
            return Err(Invalid::new("a schema must be a JSON object"));
        }
        let text = serde_json::to_string(schema).map_err(|e| Invalid::new(e.to_string()))?;
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(Invalid::new(format!(
                "the schema is {} bytes; the limit is {MAX_SCHEMA_BYTES}",
                text.len()
            )));
        }
        let validator = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| Invalid::new(format!("not a valid JSON Schema: {}", one_line(&e.to_string()))))?;
        Ok(Self {
            text,
            validator: Arc::new(validator),
        })
    }

    /// Compiles a schema read back from the store.
    pub fn from_stored(text: &str) -> Result<Self, Invalid> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Invalid::new(format!("stored schema is not JSON: {e}")))?;
        Self::compile(&value)
    }

    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// Checks `data`; on failure, the first few violations, each named by
    /// its path below `prefix` (e.g. `data` or `events[3].data`).
    pub fn check(&self, data: &serde_json::Value, prefix: &str) -> Result<(), Vec<Violation>> {
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(data)
            .take(MAX_VIOLATIONS_LISTED)
            .map(|error| Violation {
                path: json_path(prefix, error.instance_path()),
                rule: one_line(&error.to_string()),
            })
            .collect();
        if violations.is_empty() { Ok(()) } else { Err(violations) }
    }
}

/// `prefix.name[2].other`; a property that is not a plain identifier is
/// written `["odd key"]`.
fn json_path(prefix: &str, location: &jsonschema::paths::Location) -> String {
    let mut path = prefix.to_owned();
    for segment in location.iter() {
        match segment {
            jsonschema::paths::LocationSegment::Index(index) => path.push_str(&format!("[{index}]")),
            jsonschema::paths::LocationSegment::Property(name) => {
                let plain = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if plain {
                    path.push('.');
                    path.push_str(&name);
                } else {
                    path.push_str(&format!(
                        "[{}]",
                        serde_json::to_string(name.as_ref()).unwrap_or_default()
                    ));
                }
            }
        }
    }
    path
}

/// Error texts quote the offending value; keep them on one short line.
fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > MAX {
        format!("{}…", flat.chars().take(MAX).collect::<String>())
    } else {
        flat
    }
}

/// A registered type as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypeRecord {
    pub project_id: super::ProjectId,
    pub name: EventType,
    pub description: Option<String>,
    /// The schema's JSON text, compiled before it was stored.
    pub schema: Option<String>,
    pub archive_time: Option<super::Timestamp>,
    pub create_time: super::Timestamp,
    pub update_time: super::Timestamp,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn violations_name_the_path_and_rule() {
        let schema = EventSchema::compile(&json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {
                "type": "object", "properties": {"price": {"type": "number"}}}}},
        }))
        .unwrap();
        let data = json!({"items": [{"price": 1}, {"price": 2}, {"price": "x"}]});
        let violations = schema.check(&data, "events[3].data").unwrap_err();
        assert_eq!(violations[0].path, "events[3].data.items[2].price");
        assert!(violations[0].rule.contains("number"), "{:?}", violations[0]);
        assert!(schema.check(&json!({"items": []}), "data").is_ok());
    }

    #[test]
    fn odd_keys_are_quoted() {
        let schema = EventSchema::compile(&json!({"properties": {"a b": {"type": "string"}}})).unwrap();
        let violations = schema.check(&json!({"a b": 1}), "data").unwrap_err();
        assert_eq!(violations[0].path, r#"data["a b"]"#);
    }

    #[test]
    fn invalid_schemas_are_refused() {
        for bad in [
            json!({"type": "strnig"}),
            json!({"minimum": "three"}),
            json!([1]),
            json!({"$ref": "https://example.com/schema.json"}),
        ] {
            assert!(EventSchema::compile(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn herald_types_are_known() {
        assert!(is_herald_own("batch.completed"));
        assert!(is_herald_own("webhook.ping"));
        assert!(!is_herald_own("order.created"));
    }
}
