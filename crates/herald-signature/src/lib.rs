//! Sign and verify webhooks the [Standard Webhooks] way, plus JWKS and
//! body-bound JWTs — the signature layer of Herald, usable on its own by
//! senders and receivers.
//!
//! - **`v1`** (HMAC-SHA256, `whsec_` secrets) and **`v1a`** (Ed25519,
//!   `whsk_`/`whpk_` keys) entries in `webhook-signature`, over the exact
//!   bytes `{webhook-id}.{webhook-timestamp}.{body}`: [`Signer`],
//!   [`Verifier`].
//! - A [`ReplayGuard`] trait and an in-memory implementation that remember
//!   accepted ids for the tolerance window.
//! - [`JwkSet`] to publish Ed25519 and RSA public keys and to read them
//!   back, and a compact-JWS format ([`JwtSigner`], [`JwtVerifier`]) whose
//!   claims bind the body hash, for consumers who verify with JWT libraries.
//!
//! Invariants: the crate does no I/O (no network, no files, no async
//! runtime; time comes from an injectable [`Clock`], randomness only from
//! the OS for key generation); parsed keys are always valid; secrets are
//! zeroized on drop and never printed; no input makes a verifier panic.
//!
//! # Module layout
//!
//! `keys` (key types and encodings), `message` (id and timestamp rules),
//! `header` ([`HeaderSource`]), `sign`, `verify`, `replay`, `clock`,
//! `jwks`, `jwt`, `error` (every error type), `encoding` (strict base64).
//!
//! # Example
//!
//! ```
//! use herald_signature::{
//!     FixedClock, HmacKey, InMemoryReplayGuard, Signer, SigningKey, TrustedKey, Verifier, VerifyError,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Sender: one entry per active key.
//! let secret = HmacKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! let signer = Signer::new(vec![SigningKey::Hmac(secret.clone())])?;
//! let body = br#"{"test": 2432232314}"#;
//! let signature = signer.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)?;
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//!
//! // Receiver: any HeaderSource works (http::HeaderMap, HashMap, pairs…).
//! let headers = [
//!     ("Webhook-Id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     ("Webhook-Timestamp", "1614265330"),
//!     ("Webhook-Signature", signature.as_str()),
//! ];
//! let verifier = Verifier::new(vec![TrustedKey::Hmac(secret)]).with_clock(FixedClock(1614265330));
//! let guard = InMemoryReplayGuard::new(10_000);
//! let verified = verifier.verify_and_record(&headers, body, &guard)?;
//! assert_eq!(verified.id(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
//!
//! // The same request again is a replay; a changed body is not signed.
//! assert!(matches!(verifier.verify_and_record(&headers, body, &guard), Err(VerifyError::Replay(_))));
//! assert!(matches!(verifier.verify(&headers, b"{}"), Err(VerifyError::NoMatchingSignature { .. })));
//! # Ok(())
//! # }
//! ```
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod clock;
mod encoding;
mod error;
mod header;
pub mod jwks;
pub mod jwt;
mod keys;
mod message;
mod replay;
mod sign;
mod verify;

pub use crate::clock::{Clock, FixedClock, SystemClock};
pub use crate::error::{
    Base64Problem, IdError, JwksError, JwtError, KeyError, KeyKind, ReplayError, SignError, VerifyError,
};
pub use crate::header::{HeaderSource, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
pub use crate::jwks::JwkSet;
pub use crate::jwt::{JwtAlgorithm, JwtClaims, JwtMessage, JwtSigner, JwtSigningKey, JwtVerifier, VerifiedJwt};
pub use crate::keys::{
    ED25519_PUBLIC_PREFIX, ED25519_SECRET_PREFIX, Ed25519PublicKey, Ed25519SecretKey, HMAC_GENERATED_BYTES,
    HMAC_MAX_BYTES, HMAC_MIN_BYTES, HMAC_SECRET_PREFIX, HmacKey, KeyId, MAX_KEY_ID_LEN, PublicKey, RSA_GENERATED_BITS,
    RSA_MAX_BITS, RSA_MIN_BITS, RsaPrivateKey, RsaPublicKey, SigningKey, TrustedKey,
};
pub use crate::message::{MAX_ID_LEN, MAX_TIMESTAMP_LEN, validate_id};
pub use crate::replay::{InMemoryReplayGuard, ReplayGuard};
pub use crate::sign::{SignedHeaders, Signer};
pub use crate::verify::{
    DEFAULT_TOLERANCE_SECONDS, MAX_SIGNATURE_ENTRIES, MAX_SIGNATURE_HEADER_LEN, MAX_V1A_ENTRIES_CHECKED,
    MatchedSignature, SignatureScheme, VerifiedWebhook, Verifier,
};
