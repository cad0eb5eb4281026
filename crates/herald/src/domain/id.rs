//! Typed, prefixed identifiers (`evt_01J…`, `wh_01J…`).
//!
//! Ids are ULIDs: 128 bits, time-ordered (new rows append to the end of an
//! index) and unguessable in their random part. The prefix tells a reader what
//! an id names and makes mixing two kinds of id a parse error. An id never
//! contains `.` or whitespace, so an [`EventId`] is always a valid
//! `webhook-id`.

use std::fmt;

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(ulid::Ulid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, unique id.
            pub fn generate() -> Self {
                Self(ulid::Ulid::generate())
            }

            /// Parses `<prefix>_<26 Crockford base32 chars>`; anything else is `None`.
            pub fn parse(text: &str) -> Option<Self> {
                let rest = text.strip_prefix($prefix)?.strip_prefix('_')?;
                if rest.len() != 26 {
                    return None;
                }
                ulid::Ulid::from_string(rest).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    };
}

define_id!(
    /// A project: the tenant that owns webhooks, events and API keys.
    ProjectId, "prj"
);
define_id!(
    /// A project API key (the id, not the secret).
    ApiKeyId, "key"
);
define_id!(
    /// A webhook endpoint subscription.
    WebhookId, "wh"
);
define_id!(
    /// One signing secret of a webhook.
    SecretId, "whs"
);
define_id!(
    /// An event; also the `webhook-id` header of each of its deliveries.
    EventId, "evt"
);
define_id!(
    /// One event's delivery to one webhook.
    DeliveryId, "dlv"
);
define_id!(
    /// A replay: re-queueing a webhook's past deliveries in the background.
    ReplayId, "rpl"
);
define_id!(
    /// A stored file (a batch's input, output or error file).
    FileId, "file"
);
define_id!(
    /// An OpenAI-compatible batch.
    BatchId, "batch"
);
define_id!(
    /// One request of a batch, as named in its output line (`id`).
    BatchRequestId, "batch_req"
);
define_id!(
    /// A long-running operation (`operations/op_…`).
    OperationId, "op"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_prefixes() {
        let id = EventId::generate();
        let text = id.to_string();
        assert!(text.starts_with("evt_") && text.len() == 30);
        assert_eq!(EventId::parse(&text), Some(id));
        assert_eq!(WebhookId::parse(&text), None);
        assert_eq!(EventId::parse("evt_"), None);
        assert_eq!(EventId::parse("evt_01ARZ3NDEKTSV4RRFFQ69G5FA"), None);
        assert_eq!(EventId::parse("evt_01ARZ3NDEKTSV4RRFFQ69G5FAVX"), None);
        assert!(EventId::parse("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV").is_some());
    }
}
