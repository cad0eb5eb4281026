//! Reading request headers from whatever the caller's framework has.
//!
//! [`HeaderSource`] is implemented for `http::HeaderMap` (feature `http`),
//! `HashMap` and `BTreeMap` with string keys, and slices, arrays and `Vec`s
//! of `(name, value)` pairs. Values are bytes: a value that is not ASCII is
//! reported by the verifier as an invalid header, never a panic.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

/// `webhook-id`: the message id, the same on every retry.
pub const WEBHOOK_ID: &str = "webhook-id";
/// `webhook-timestamp`: Unix seconds of this attempt.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `webhook-signature`: space-separated `label,base64` entries, or a JWT.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// A set of request headers.
///
/// Contract for implementations: `name` is passed in lowercase; match it
/// case-insensitively (ASCII); return the first value when a header occurs
/// more than once; return the raw bytes (the verifier checks them).
pub trait HeaderSource {
    /// The value of header `name`, or `None` when absent.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn header(&self, name: &str) -> Option<&[u8]> {
        (**self).header(name)
    }
}

#[cfg(feature = "http")]
impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        // `HeaderMap` names are lowercase; `get` with an invalid name is `None`.
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

/// Exact key first (cheap, and the lowercase spelling wins if a map has
/// several spellings), then a case-insensitive scan in iteration order.
impl<K, V, S> HeaderSource for HashMap<K, V, S>
where
    K: std::borrow::Borrow<str> + Eq + Hash,
    V: AsRef<[u8]>,
    S: BuildHasher,
{
    fn header(&self, name: &str) -> Option<&[u8]> {
        if let Some(value) = self.get(name) {
            return Some(value.as_ref());
        }
        self.iter()
            .find(|(key, _)| key.borrow().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

/// Exact key first, then the first case-insensitive match in key order.
impl<K, V> HeaderSource for BTreeMap<K, V>
where
    K: std::borrow::Borrow<str> + Ord,
    V: AsRef<[u8]>,
{
    fn header(&self, name: &str) -> Option<&[u8]> {
        if let Some(value) = self.get(name) {
            return Some(value.as_ref());
        }
        self.iter()
            .find(|(key, _)| key.borrow().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

/// The first pair whose name matches case-insensitively.
impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for [(K, V)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> HeaderSource for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderSource for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.as_slice().header(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &dyn HeaderSource, expected: Option<&[u8]>) {
        assert_eq!(source.header(WEBHOOK_ID), expected);
    }

    #[test]
    fn every_source_matches_names_case_insensitively() {
        let value: Option<&[u8]> = Some(b"msg_1");
        check(&[("Webhook-Id", "msg_1")], value);
        check(&vec![("WEBHOOK-ID".to_owned(), "msg_1".to_owned())], value);
        check(&HashMap::from([("webhook-ID".to_owned(), "msg_1".to_owned())]), value);
        check(&BTreeMap::from([("Webhook-Id", b"msg_1".to_vec())]), value);
        check(&[("other", "x")], None);
        #[cfg(feature = "http")]
        {
            let mut map = http::HeaderMap::new();
            map.insert("Webhook-Id", http::HeaderValue::from_static("msg_1"));
            check(&map, value);
        }
    }

    #[test]
    fn exact_lowercase_spelling_wins_in_maps() {
        let map = HashMap::from([("Webhook-Id", "upper"), ("webhook-id", "lower")]);
        assert_eq!(map.header(WEBHOOK_ID), Some(b"lower".as_slice()));
    }
}
