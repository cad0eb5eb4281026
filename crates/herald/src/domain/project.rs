//! Projects and their API keys.

use super::{ApiKeyId, Invalid, ProjectId, Timestamp};

const MAX_NAME_LEN: usize = 200;

/// A human-readable name: 1..=200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.chars().count() > MAX_NAME_LEN {
            return Err(Invalid::new(format!(
                "a name must be 1 to {MAX_NAME_LEN} characters long"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Invalid::new("a name must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Re-wraps a name that was validated before it was stored.
    pub(crate) fn from_trusted(text: String) -> Self {
        Self(text)
    }
}

#[derive(Debug, Clone)]
pub struct Project {
    pub id: ProjectId,
    pub name: Name,
    pub create_time: Timestamp,
}

/// An API key's metadata; the key itself is only ever shown once, at creation.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub project_id: ProjectId,
    pub name: Option<Name>,
    /// The first characters of the key, so that a user can tell keys apart.
    pub key_prefix: String,
    pub create_time: Timestamp,
}
