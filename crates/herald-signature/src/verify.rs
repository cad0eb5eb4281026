//! Verifying Standard Webhooks (`v1` HMAC and `v1a` Ed25519 entries).
//!
//! Order of checks, each with its own [`VerifyError`]: the three headers are
//! present and ASCII; the id is valid; the timestamp is `^[0-9]+$` and
//! within the tolerance (before any cryptography, so stale floods are
//! cheap); then entries are tried against every trusted key. Entries with
//! an unknown label (`v2`…) or a malformed shape (unpadded, wrong length,
//! non-canonical base64) are skipped, never errors. HMAC tags are compared
//! in constant time. A replay guard is consulted only after a signature
//! verified.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::clock::{Clock, SystemClock};
use crate::encoding;
use crate::error::{ReplayError, VerifyError};
use crate::header::{HeaderSource, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use crate::keys::TrustedKey;
use crate::message;
use crate::replay::ReplayGuard;

/// Default tolerance between `webhook-timestamp` and now: 5 minutes either
/// way (a difference of exactly 300 s is accepted, 301 s refused).
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 300;

/// Longest `webhook-signature` value accepted, in bytes (about 90 `v1a`
/// entries): bounds the work an unauthenticated request can cause.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8192;

/// Most entries accepted in one `webhook-signature` value.
pub const MAX_SIGNATURE_ENTRIES: usize = 64;

/// Well-formed `v1a` entries checked per Ed25519 key; later ones are
/// skipped. A sender emits one entry per active key (two or three during a
/// rotation), and each check costs an Ed25519 verification (~30 µs): this
/// bounds what a forged header can cost to 8 × the trusted Ed25519 keys.
pub const MAX_V1A_ENTRIES_CHECKED: usize = 8;

/// Which signature scheme an entry used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `v1`: HMAC-SHA256.
    V1,
    /// `v1a`: Ed25519.
    V1a,
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V1a => "v1a",
        })
    }
}

/// Verifies Standard Webhooks messages against a set of trusted keys
/// (several during a rotation; HMAC and Ed25519 may be mixed).
///
/// Cheap to clone and `Send + Sync`. An empty key set is allowed and
/// verifies nothing.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Arc<[TrustedKey]>,
    tolerance_seconds: u64,
    clock: Arc<dyn Clock>,
}

impl Verifier {
    /// A verifier trusting `keys`, with the default tolerance and the system clock.
    #[must_use]
    pub fn new(keys: Vec<TrustedKey>) -> Self {
        Self {
            keys: keys.into(),
            tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Accept timestamps at most `seconds` away from now, either way.
    #[must_use]
    pub fn with_tolerance_seconds(mut self, seconds: u64) -> Self {
        self.tolerance_seconds = seconds;
        self
    }

    /// Read "now" from `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The trusted keys, in the order their indexes are reported.
    #[must_use]
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The tolerance in seconds.
    #[must_use]
    pub fn tolerance_seconds(&self) -> u64 {
        self.tolerance_seconds
    }

    /// Verifies `headers` and the exact received `body` bytes at the
    /// clock's current time. Does not consult a replay guard: see
    /// [`Verifier::verify_and_record`] and [`VerifiedWebhook::record`].
    ///
    /// # Errors
    /// The first failed check, as a [`VerifyError`].
    pub fn verify<H: HeaderSource + ?Sized>(&self, headers: &H, body: &[u8]) -> Result<VerifiedWebhook, VerifyError> {
        self.verify_at(headers, body, self.clock.now_unix_seconds())
    }

    /// Verifies, then records the id in `guard`. A replay (or a full or
    /// unavailable guard) is an error even though the signature is valid.
    ///
    /// # Errors
    /// As [`Verifier::verify`], plus [`VerifyError::Replay`].
    pub fn verify_and_record<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        guard: &dyn ReplayGuard,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let verified = self.verify(headers, body)?;
        verified.record(guard)?;
        Ok(verified)
    }

    /// Verifies as if the current time were `now` (Unix seconds).
    ///
    /// # Errors
    /// As [`Verifier::verify`].
    pub fn verify_at<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedWebhook, VerifyError> {
        let id = ascii_header(headers, WEBHOOK_ID)?;
        let timestamp_text = ascii_header(headers, WEBHOOK_TIMESTAMP)?;
        let signature = ascii_header(headers, WEBHOOK_SIGNATURE)?;
        message::validate_id(id)?;
        let timestamp = message::parse_timestamp(timestamp_text)?;
        self.check_window(timestamp, now)?;
        if signature.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(VerifyError::InvalidHeader {
                name: WEBHOOK_SIGNATURE,
                problem: "longer than 8192 bytes",
            });
        }
        let entry_count = entries(signature).count();
        if entry_count > MAX_SIGNATURE_ENTRIES {
            return Err(VerifyError::InvalidHeader {
                name: WEBHOOK_SIGNATURE,
                problem: "more than 64 entries",
            });
        }
        // The timestamp is signed as sent (leading zeros included), not re-formatted.
        let parts = message::signed_parts(id, timestamp_text.as_bytes(), body);
        let matched = self
            .find_match(signature, &parts)
            .ok_or(VerifyError::NoMatchingSignature {
                entries: entry_count,
                keys: self.keys.len(),
            })?;
        let expires_at = timestamp.saturating_add_unsigned(self.tolerance_seconds);
        Ok(VerifiedWebhook {
            id: id.to_owned(),
            timestamp,
            verified_at: now,
            expires_at,
            matched,
        })
    }

    fn check_window(&self, timestamp: i64, now: i64) -> Result<(), VerifyError> {
        let tolerance = self.tolerance_seconds;
        let difference = i128::from(now) - i128::from(timestamp);
        if difference > i128::from(tolerance) {
            return Err(VerifyError::TimestampTooOld {
                timestamp,
                now,
                tolerance,
            });
        }
        if -difference > i128::from(tolerance) {
            return Err(VerifyError::TimestampTooNew {
                timestamp,
                now,
                tolerance,
            });
        }
        Ok(())
    }

    /// Keys outer, entries inner: each HMAC is computed at most once per
    /// key, and only if a well-formed `v1` entry exists.
    fn find_match(&self, signature: &str, parts: &[&[u8]]) -> Option<MatchedSignature> {
        for (key_index, key) in self.keys.iter().enumerate() {
            match key {
                TrustedKey::Hmac(key) => {
                    let mut expected: Option<[u8; 32]> = None;
                    for (entry_index, entry) in entries(signature).enumerate() {
                        let Some(candidate) = entry
                            .strip_prefix("v1,")
                            .and_then(encoding::decode_standard_exact::<32>)
                        else {
                            continue;
                        };
                        let expected = expected.get_or_insert_with(|| key.mac(parts));
                        if bool::from(expected.ct_eq(&candidate)) {
                            return Some(MatchedSignature {
                                scheme: SignatureScheme::V1,
                                key_index,
                                entry_index,
                            });
                        }
                    }
                }
                TrustedKey::Ed25519(key) => {
                    let mut checked = 0;
                    for (entry_index, entry) in entries(signature).enumerate() {
                        let Some(candidate) = entry
                            .strip_prefix("v1a,")
                            .and_then(encoding::decode_standard_exact::<64>)
                        else {
                            continue;
                        };
                        if checked == MAX_V1A_ENTRIES_CHECKED {
                            break;
                        }
                        checked += 1;
                        if key.verify_parts(parts, &candidate) {
                            return Some(MatchedSignature {
                                scheme: SignatureScheme::V1a,
                                key_index,
                                entry_index,
                            });
                        }
                    }
                }
            }
        }
        None
    }
}

/// Entries of a `webhook-signature` value. Empty pieces from stray spaces
/// are ignored (Herald never emits them, but tolerating them is harmless).
fn entries(signature: &str) -> impl Iterator<Item = &str> {
    signature.split(' ').filter(|entry| !entry.is_empty())
}

/// A header as text: present and all ASCII (anything else is refused, not
/// guessed at).
fn ascii_header<'a, H: HeaderSource + ?Sized>(headers: &'a H, name: &'static str) -> Result<&'a str, VerifyError> {
    let bytes = headers.header(name).ok_or(VerifyError::MissingHeader { name })?;
    if !bytes.is_ascii() {
        return Err(VerifyError::InvalidHeader {
            name,
            problem: "not ASCII",
        });
    }
    std::str::from_utf8(bytes).map_err(|_| VerifyError::InvalidHeader {
        name,
        problem: "not ASCII",
    })
}

/// Which entry matched which trusted key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchedSignature {
    /// The entry's scheme.
    pub scheme: SignatureScheme,
    /// Index of the key in [`Verifier::keys`].
    pub key_index: usize,
    /// Index of the entry among the non-empty entries of `webhook-signature`.
    pub entry_index: usize,
}

/// Proof that a message verified: only [`Verifier`] creates it, so
/// [`VerifiedWebhook::record`] can only record ids of signed messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWebhook {
    id: String,
    timestamp: i64,
    verified_at: i64,
    expires_at: i64,
    matched: MatchedSignature,
}

impl VerifiedWebhook {
    /// The `webhook-id`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `webhook-timestamp` (Unix seconds).
    #[must_use]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The last second at which this message passes the timestamp check:
    /// how long a replay guard must remember its id.
    #[must_use]
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Which entry matched which key.
    #[must_use]
    pub fn matched(&self) -> MatchedSignature {
        self.matched
    }

    /// Records the id in `guard` (after the fact, for receivers that decide
    /// whether to accept a message between verifying and recording it).
    ///
    /// # Errors
    /// The guard's [`ReplayError`]: [`ReplayError::Replayed`] for an id
    /// already accepted, otherwise the guard could not record it.
    pub fn record(&self, guard: &dyn ReplayGuard) -> Result<(), ReplayError> {
        guard.check_and_record(&self.id, self.expires_at, self.verified_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::keys::HmacKey;
    use crate::replay::InMemoryReplayGuard;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = b"{\"test\": 2432232314}";
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verifier() -> Verifier {
        let key = HmacKey::parse(SECRET).unwrap_or_else(|e| panic!("{e}"));
        Verifier::new(vec![TrustedKey::Hmac(key)]).with_clock(FixedClock(TIMESTAMP))
    }

    fn headers(timestamp: &str, signature: &str) -> [(&'static str, String); 3] {
        [
            (WEBHOOK_ID, ID.to_owned()),
            (WEBHOOK_TIMESTAMP, timestamp.to_owned()),
            (WEBHOOK_SIGNATURE, signature.to_owned()),
        ]
    }

    #[test]
    fn only_the_first_v1a_entries_are_checked() {
        use crate::keys::Ed25519SecretKey;
        use crate::keys::SigningKey;
        use crate::sign::Signer;
        let key = Ed25519SecretKey::from_seed(&[7; 32]);
        let verifier = Verifier::new(vec![TrustedKey::Ed25519(key.public_key())]).with_clock(FixedClock(TIMESTAMP));
        let signer = Signer::new(vec![SigningKey::Ed25519(key)]).unwrap_or_else(|e| panic!("{e}"));
        let valid = signer.sign(ID, TIMESTAMP, BODY).unwrap_or_else(|e| panic!("{e}"));
        let forged = format!("v1a,{}", "A".repeat(86) + "==");
        let with_forgeries = |n: usize| {
            let mut entries = vec![forged.as_str(); n];
            entries.push(valid.as_str());
            entries.join(" ")
        };
        let ts = TIMESTAMP.to_string();
        let within = headers(&ts, &with_forgeries(MAX_V1A_ENTRIES_CHECKED - 1));
        assert!(verifier.verify(&within[..], BODY).is_ok());
        let beyond = headers(&ts, &with_forgeries(MAX_V1A_ENTRIES_CHECKED));
        assert!(matches!(
            verifier.verify(&beyond[..], BODY),
            Err(VerifyError::NoMatchingSignature { .. })
        ));
    }

    #[test]
    fn tolerance_boundary_is_inclusive() {
        let verifier = verifier();
        let ts = TIMESTAMP.to_string();
        let headers = headers(&ts, SIGNATURE);
        assert!(verifier.verify_at(&headers, BODY, TIMESTAMP + 300).is_ok());
        assert!(verifier.verify_at(&headers, BODY, TIMESTAMP - 300).is_ok());
        assert!(matches!(
            verifier.verify_at(&headers, BODY, TIMESTAMP + 301),
            Err(VerifyError::TimestampTooOld { .. })
        ));
        assert!(matches!(
            verifier.verify_at(&headers, BODY, TIMESTAMP - 301),
            Err(VerifyError::TimestampTooNew { .. })
        ));
        let strict = verifier.clone().with_tolerance_seconds(10);
        assert!(matches!(
            strict.verify_at(&headers, BODY, TIMESTAMP + 11),
            Err(VerifyError::TimestampTooOld { .. })
        ));
        assert!(
            verifier.verify_at(&headers, BODY, i64::MIN).is_err(),
            "extreme clocks do not overflow"
        );
    }

    #[test]
    fn replay_is_recorded_only_after_a_valid_signature() {
        let verifier = verifier();
        let guard = InMemoryReplayGuard::new(10);
        let ts = TIMESTAMP.to_string();
        let forged = headers(&ts, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert!(matches!(
            verifier.verify_and_record(&forged, BODY, &guard),
            Err(VerifyError::NoMatchingSignature { .. })
        ));
        assert!(guard.is_empty(), "unsigned requests cannot poison the guard");
        let good = headers(&ts, SIGNATURE);
        let first = verifier.verify_and_record(&good, BODY, &guard);
        assert_eq!(first.map(|v| v.expires_at()).ok(), Some(TIMESTAMP + 300));
        assert!(matches!(
            verifier.verify_and_record(&good, BODY, &guard),
            Err(VerifyError::Replay(ReplayError::Replayed))
        ));
    }

    #[test]
    fn oversized_and_non_ascii_headers_are_invalid_not_panics() {
        let verifier = verifier();
        let ts = TIMESTAMP.to_string();
        let long = "v9,x ".repeat(2000);
        assert!(matches!(
            verifier.verify(&headers(&ts, &long), BODY),
            Err(VerifyError::InvalidHeader { .. })
        ));
        let many = "v2,x ".repeat(65);
        assert!(matches!(
            verifier.verify(&headers(&ts, &many), BODY),
            Err(VerifyError::InvalidHeader { .. })
        ));
        let non_ascii: [(&str, &[u8]); 3] = [
            (WEBHOOK_ID, b"msg"),
            (WEBHOOK_TIMESTAMP, b"1614265330"),
            (WEBHOOK_SIGNATURE, b"v1,\xff"),
        ];
        assert!(matches!(
            verifier.verify(&non_ascii, BODY),
            Err(VerifyError::InvalidHeader { .. })
        ));
    }
}
