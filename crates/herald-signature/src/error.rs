//! Every error this crate returns. Callers branch on these, so each failure
//! has its own variant; messages name the problem but never echo secret
//! material.

use std::fmt;

/// Which kind of key a [`KeyError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A `whsec_` HMAC-SHA256 secret.
    HmacSecret,
    /// A `whsk_` Ed25519 secret key.
    Ed25519Secret,
    /// A `whpk_` Ed25519 public key.
    Ed25519Public,
    /// An RSA private key (PKCS#8).
    RsaPrivate,
    /// An RSA public key.
    RsaPublic,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::HmacSecret => "HMAC secret (whsec_)",
            KeyKind::Ed25519Secret => "Ed25519 secret key (whsk_)",
            KeyKind::Ed25519Public => "Ed25519 public key (whpk_)",
            KeyKind::RsaPrivate => "RSA private key",
            KeyKind::RsaPublic => "RSA public key",
        })
    }
}

/// Why base64 text was refused. The offending character is never included:
/// it may belong to a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base64Problem {
    /// A character outside the alphabet, or padding in the middle.
    #[error("invalid character at offset {offset}")]
    InvalidCharacter {
        /// Byte offset of the character in the base64 text.
        offset: usize,
    },
    /// A length no base64 encoding can have.
    #[error("invalid length")]
    InvalidLength,
    /// Padding missing, incomplete, or present where none is allowed.
    #[error("missing or invalid padding")]
    InvalidPadding,
    /// Non-zero bits after the last full byte: another text encodes the same bytes.
    #[error("non-canonical final character")]
    NonCanonical,
}

/// Why a key string, key bytes or key id were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The string does not start with the prefix of the expected key kind.
    #[error("{kind} must start with `{expected}`")]
    WrongPrefix {
        /// The key kind that was being parsed.
        kind: KeyKind,
        /// The required prefix.
        expected: &'static str,
    },
    /// The string starts with none of the prefixes accepted here.
    #[error("unrecognised key: expected a key starting with {expected}")]
    UnrecognizedKey {
        /// The accepted prefixes, for the message.
        expected: &'static str,
    },
    /// The text after the prefix is not canonical padded standard base64.
    #[error("{kind} is not canonical padded standard base64: {problem}")]
    InvalidBase64 {
        /// The key kind that was being parsed.
        kind: KeyKind,
        /// What is wrong with the encoding.
        problem: Base64Problem,
    },
    /// Fewer bytes than the kind allows.
    #[error("{kind} is too short: {len} bytes, at least {min} required")]
    TooShort {
        /// The key kind that was being parsed.
        kind: KeyKind,
        /// Decoded length in bytes.
        len: usize,
        /// Minimum length in bytes.
        min: usize,
    },
    /// More bytes than the kind allows.
    #[error("{kind} is too long: {len} bytes, at most {max} allowed")]
    TooLong {
        /// The key kind that was being parsed.
        kind: KeyKind,
        /// Decoded length in bytes (estimated for absurdly long input).
        len: usize,
        /// Maximum length in bytes.
        max: usize,
    },
    /// A length that none of the accepted encodings of this kind has.
    #[error("{kind} has {len} bytes; expected {expected}")]
    WrongLength {
        /// The key kind that was being parsed.
        kind: KeyKind,
        /// Decoded length in bytes.
        len: usize,
        /// The accepted lengths, for the message.
        expected: &'static str,
    },
    /// A 64-byte `whsk_` whose public half is not derived from its seed.
    #[error("Ed25519 secret key: the public half of the 64-byte key does not match its seed")]
    MismatchedKeypair,
    /// 32 bytes that are not the encoding of a curve point.
    #[error("Ed25519 public key is not a valid curve point")]
    InvalidPoint,
    /// A small-order point: signatures under it prove nothing.
    #[error("Ed25519 public key is a weak (small-order) point")]
    WeakPublicKey,
    /// 44 bytes that are not an Ed25519 `SubjectPublicKeyInfo`.
    #[error("44-byte Ed25519 public key is not an Ed25519 SubjectPublicKeyInfo (prefix 302a300506032b6570032100)")]
    NotEd25519Spki,
    /// An RSA key that could not be decoded or is unusable.
    #[error("{kind}: {reason}")]
    InvalidRsa {
        /// Private or public.
        kind: KeyKind,
        /// What the decoder or the key checks reported.
        reason: String,
    },
    /// An RSA modulus outside the accepted sizes.
    #[error("{kind} has a {bits}-bit modulus; {min} to {max} bits required")]
    RsaKeySize {
        /// Private or public.
        kind: KeyKind,
        /// Modulus size in bits.
        bits: usize,
        /// Minimum modulus size in bits.
        min: usize,
        /// Maximum modulus size in bits.
        max: usize,
    },
    /// A key id (JWK `kid`) that is empty, too long, or not visible ASCII.
    #[error("invalid key id (kid): {reason}")]
    InvalidKeyId {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed")]
    Rng,
}

/// Why a `webhook-id` was refused, when signing or verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("webhook-id is empty")]
    Empty,
    /// The id is longer than [`crate::MAX_ID_LEN`] bytes.
    #[error("webhook-id is {len} bytes long; at most {max} allowed")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The id contains `.`, which would make the signed content ambiguous.
    #[error("webhook-id contains '.' at byte {offset}")]
    FullStop {
        /// Byte offset of the first `.`.
        offset: usize,
    },
    /// The id contains whitespace, a control character or a non-ASCII byte.
    #[error("webhook-id contains whitespace, a control character or a non-ASCII byte at byte {offset}")]
    ForbiddenByte {
        /// Byte offset of the first forbidden byte.
        offset: usize,
    },
}

/// Why a message could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The message id is not a valid `webhook-id`.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// Timestamps are Unix seconds and verifiers accept only `^[0-9]+$`.
    #[error("timestamp {0} is negative; webhook-timestamp is Unix seconds, 0 or more")]
    NegativeTimestamp(i64),
    /// A [`crate::Signer`] needs at least one key.
    #[error("no signing keys: a signer needs at least one key")]
    NoKeys,
    /// The signature primitive failed (never expected with valid keys).
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// Why a [`crate::ReplayGuard`] did not accept a message id.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The id was already recorded and has not expired: a replay (or a
    /// retry of a message you already accepted).
    #[error("webhook-id was already accepted (replay)")]
    Replayed,
    /// The guard is full of unexpired ids. Fail closed: the id cannot be
    /// remembered, so the message is refused; the sender retries later.
    #[error("replay guard is full ({capacity} unexpired ids); retry later")]
    Full {
        /// The guard's capacity.
        capacity: usize,
    },
    /// A user-provided guard (Redis, a database…) could not be reached.
    #[error("replay guard unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

/// Why a Standard Webhooks message (`v1`/`v1a`) failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {name}")]
    MissingHeader {
        /// The header name, lowercase.
        name: &'static str,
    },
    /// A header is present but unusable (not ASCII, too long, too many entries).
    #[error("invalid header {name}: {problem}")]
    InvalidHeader {
        /// The header name, lowercase.
        name: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The `webhook-id` header is not a valid id.
    #[error(transparent)]
    InvalidId(#[from] IdError),
    /// `webhook-timestamp` is not `^[0-9]+$` or does not fit in 64 bits.
    #[error("invalid webhook-timestamp: {problem}")]
    InvalidTimestamp {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The timestamp is more than the tolerance in the past.
    #[error("webhook-timestamp {timestamp} is too old: now is {now}, tolerance {tolerance} s")]
    TimestampTooOld {
        /// The message timestamp.
        timestamp: i64,
        /// The verifier's current time.
        now: i64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// The timestamp is more than the tolerance in the future.
    #[error("webhook-timestamp {timestamp} is too far in the future: now is {now}, tolerance {tolerance} s")]
    TimestampTooNew {
        /// The message timestamp.
        timestamp: i64,
        /// The verifier's current time.
        now: i64,
        /// The tolerance in seconds.
        tolerance: u64,
    },
    /// No entry of `webhook-signature` verifies under any trusted key.
    #[error("no matching signature ({entries} entries checked against {keys} trusted keys)")]
    NoMatchingSignature {
        /// Entries in the header (including skipped, unknown ones).
        entries: usize,
        /// Trusted keys tried.
        keys: usize,
    },
    /// The signature verified but the replay guard refused the id.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// Why a JWKS document or JWK set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not JSON, or not an object with a `keys` array.
    #[error("not a JWK set: {0}")]
    Malformed(String),
    /// The document is larger than [`crate::jwks::MAX_JWKS_BYTES`] or has too many keys.
    #[error("JWK set too large: {0}")]
    TooLarge(&'static str),
    /// A key of a supported type is broken (wrong length, bad encoding…).
    #[error("JWK {kid:?}: {problem}")]
    InvalidKey {
        /// The key's `kid`, when it has a usable one.
        kid: Option<String>,
        /// What is wrong with it.
        problem: String,
    },
    /// A JWK carries private key members (`d`, `p`…): someone published a secret.
    #[error("JWK {kid:?} contains private key material ({member}); refusing the whole set")]
    PrivateKeyMaterial {
        /// The key's `kid`, when it has a usable one.
        kid: Option<String>,
        /// The private member found.
        member: &'static str,
    },
    /// Two keys share a `kid`, so `kid` cannot select a key.
    #[error("duplicate kid {0:?}")]
    DuplicateKid(String),
    /// After skipping unsupported keys, nothing is left.
    #[error("the JWK set has no usable Ed25519 (OKP) or RSA signing keys")]
    NoUsableKeys,
}

/// Why a JWT could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a compact JWS: wrong number of segments, bad base64url, bad JSON,
    /// unknown header members, wrong claim types…
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The request has no (or a non-ASCII) `webhook-signature` header.
    #[error("missing or non-ASCII header {name}")]
    MissingHeader {
        /// The header name, lowercase.
        name: &'static str,
    },
    /// `alg` is not `EdDSA` or `RS256` (this includes `none`).
    #[error("unsupported JWT alg {0:?}: only EdDSA and RS256 are accepted")]
    UnsupportedAlgorithm(String),
    /// No trusted key has the token's `kid`.
    #[error("no trusted key with kid {0:?}")]
    UnknownKeyId(String),
    /// The `alg` does not match the type of the key selected by `kid`.
    #[error("alg {alg} does not match the {key_type} key {kid:?}")]
    AlgorithmMismatch {
        /// The token's `alg`.
        alg: String,
        /// The selected key's `kid`.
        kid: String,
        /// The selected key's type.
        key_type: &'static str,
    },
    /// The signature does not verify under the selected key.
    #[error("JWT signature does not verify under key {kid:?}")]
    BadSignature {
        /// The selected key's `kid`.
        kid: String,
    },
    /// `aud` is not the expected audience (the receiving URL).
    #[error("JWT audience {found:?} is not the expected {expected:?}")]
    WrongAudience {
        /// The configured audience.
        expected: String,
        /// The token's `aud`.
        found: String,
    },
    /// `iss` is not the expected issuer.
    #[error("JWT issuer {found:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("JWT expired at {exp}; now is {now} (leeway {leeway} s)")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The verifier's current time.
        now: i64,
        /// Leeway in seconds.
        leeway: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("JWT issued in the future at {iat}; now is {now} (leeway {leeway} s)")]
    IssuedInFuture {
        /// The token's `iat`.
        iat: i64,
        /// The verifier's current time.
        now: i64,
        /// Leeway in seconds.
        leeway: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("JWT not valid before {nbf}; now is {now} (leeway {leeway} s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: i64,
        /// The verifier's current time.
        now: i64,
        /// Leeway in seconds.
        leeway: u64,
    },
    /// A required claim is absent.
    #[error("JWT has no {0} claim")]
    MissingClaim(&'static str),
    /// The token has no `body_sha256` claim: it is not bound to a body.
    #[error("JWT is not bound to the body: no body_sha256 claim")]
    UnboundBody,
    /// `body_sha256` is not the hash of the received body.
    #[error("JWT body_sha256 does not match the SHA-256 of the received body")]
    BodyMismatch,
    /// `jti` differs from the `webhook-id` header.
    #[error("JWT jti {found:?} does not match webhook-id {expected:?}")]
    IdMismatch {
        /// The `webhook-id` header.
        expected: String,
        /// The token's `jti`.
        found: String,
    },
    /// A signing input is invalid (empty issuer or audience, bad id, ttl…).
    #[error("cannot sign JWT: {0}")]
    InvalidInput(String),
    /// The signature primitive failed.
    #[error("JWT signing failed: {0}")]
    Crypto(String),
}
