//! Producing `webhook-signature` values.

use std::sync::Arc;

use crate::encoding;
use crate::error::SignError;
use crate::keys::SigningKey;
use crate::message::{self, TimestampText};

/// Length of a `v1,<base64 of 32 bytes>` entry.
const V1_ENTRY_LEN: usize = 3 + 44;
/// Length of a `v1a,<base64 of 64 bytes>` entry.
const V1A_ENTRY_LEN: usize = 4 + 88;

/// Signs messages with a fixed set of keys: one `webhook-signature` entry
/// per key, in the order given, joined by single spaces (no leading,
/// trailing or doubled spaces).
///
/// Cheap to clone (the keys are shared behind an `Arc`) and `Send + Sync`,
/// so one signer serves every delivery of an endpoint. Invariant: it holds
/// at least one key.
#[derive(Clone, Debug)]
pub struct Signer {
    keys: Arc<[SigningKey]>,
    /// Exact length of the header value, to allocate it once.
    header_len: usize,
}

impl Signer {
    /// A signer for `keys` (for example the current and the previous secret
    /// during a rotation).
    ///
    /// # Errors
    /// [`SignError::NoKeys`] if `keys` is empty.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, SignError> {
        if keys.is_empty() {
            return Err(SignError::NoKeys);
        }
        let entries: usize = keys
            .iter()
            .map(|key| match key {
                SigningKey::Hmac(_) => V1_ENTRY_LEN,
                SigningKey::Ed25519(_) => V1A_ENTRY_LEN,
            })
            .sum();
        let header_len = entries + keys.len() - 1;
        Ok(Self {
            keys: keys.into(),
            header_len,
        })
    }

    /// The keys, in entry order.
    #[must_use]
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// The `webhook-signature` value for `msg_id`, `timestamp` (Unix
    /// seconds) and the exact `body` bytes that will be sent. The signed
    /// content `{msg_id}.{timestamp}.{body}` is hashed in pieces; the body
    /// is never copied.
    ///
    /// # Errors
    /// [`SignError::InvalidId`] for an id that breaks
    /// [`validate_id`](crate::validate_id)'s rules, [`SignError::NegativeTimestamp`].
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignError> {
        message::validate_id(msg_id)?;
        let timestamp_text = TimestampText::new(timestamp).ok_or(SignError::NegativeTimestamp(timestamp))?;
        let parts = message::signed_parts(msg_id, timestamp_text.as_bytes(), body);
        let mut header = String::with_capacity(self.header_len);
        for key in self.keys.iter() {
            if !header.is_empty() {
                header.push(' ');
            }
            match key {
                SigningKey::Hmac(key) => {
                    header.push_str("v1,");
                    encoding::encode_standard_into(&key.mac(&parts), &mut header);
                }
                SigningKey::Ed25519(key) => {
                    header.push_str("v1a,");
                    let signature = key.sign_parts(&parts).map_err(SignError::Crypto)?;
                    encoding::encode_standard_into(&signature, &mut header);
                }
            }
        }
        Ok(header)
    }

    /// The three Standard Webhooks headers for one delivery attempt.
    ///
    /// # Errors
    /// As [`Signer::sign`].
    pub fn sign_headers(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<SignedHeaders, SignError> {
        let signature = self.sign(msg_id, timestamp, body)?;
        Ok(SignedHeaders {
            id: msg_id.to_owned(),
            timestamp,
            signature,
        })
    }
}

/// The values of `webhook-id`, `webhook-timestamp` and `webhook-signature`
/// for one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp` (Unix seconds, never negative).
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
}

impl SignedHeaders {
    /// `(name, value)` pairs in the order they are usually sent.
    #[must_use]
    pub fn to_pairs(&self) -> [(&'static str, String); 3] {
        [
            (crate::WEBHOOK_ID, self.id.clone()),
            (crate::WEBHOOK_TIMESTAMP, self.timestamp.to_string()),
            (crate::WEBHOOK_SIGNATURE, self.signature.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IdError;
    use crate::keys::{Ed25519SecretKey, HmacKey};

    fn signer() -> Signer {
        let hmac = HmacKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(SigningKey::from);
        let ed = Ed25519SecretKey::parse("whsk_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU=").map(SigningKey::from);
        match (hmac, ed) {
            (Ok(hmac), Ok(ed)) => Signer::new(vec![hmac, ed]).unwrap_or_else(|e| panic!("{e}")),
            _ => panic!("test keys parse"),
        }
    }

    #[test]
    fn one_entry_per_key_joined_by_single_spaces() {
        let header = signer().sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, b"{\"test\": 2432232314}");
        let Ok(header) = header else { panic!("signs") };
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(entries[1].starts_with("v1a,") && entries[1].len() == V1A_ENTRY_LEN);
        assert_eq!(header.len(), signer().header_len, "capacity is exact");
    }

    #[test]
    fn refuses_bad_ids_negative_timestamps_and_empty_key_sets() {
        let signer = signer();
        assert_eq!(
            signer.sign("a.b", 1, b""),
            Err(SignError::InvalidId(IdError::FullStop { offset: 1 }))
        );
        assert_eq!(signer.sign("", 1, b""), Err(SignError::InvalidId(IdError::Empty)));
        assert_eq!(signer.sign("a", -1, b""), Err(SignError::NegativeTimestamp(-1)));
        assert!(matches!(Signer::new(Vec::new()), Err(SignError::NoKeys)));
    }

    #[test]
    fn signer_is_send_sync_and_cheap_to_share() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Signer>();
    }
}
