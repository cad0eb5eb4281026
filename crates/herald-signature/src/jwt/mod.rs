//! Body-bound JWT webhook signatures, for consumers who verify with a JWT
//! library and a JWKS.
//!
//! `webhook-signature` carries a compact JWS
//! `base64url(header).base64url(claims).base64url(signature)` (no padding):
//!
//! - header, exactly `{"alg":"EdDSA"|"RS256","typ":"JWT","kid":"<kid>"}`;
//! - claims, exactly `iss` (issuer), `aud` (the target URL, one string),
//!   `iat` and `exp` (integer Unix seconds, `exp = iat + ttl`, ttl 300 s by
//!   default), `jti` (the `webhook-id`) and `body_sha256` (base64url without
//!   padding of the SHA-256 of the exact body bytes);
//! - signature: Ed25519 over the ASCII `header.claims` (alg `EdDSA`), or
//!   RSASSA-PKCS1-v1_5 with SHA-256 (alg `RS256`).
//!
//! The code is small and strict on purpose rather than a general JWT
//! library: only these two algorithms, only these header members, and a
//! token that is not bound to the body is refused.

mod sign;
mod verify;

pub use self::sign::{JwtMessage, JwtSigner, JwtSigningKey};
pub use self::verify::{JwtVerifier, VerifiedJwt};

use serde::{Deserialize, Serialize};

/// Default lifetime of a token (`exp - iat`), in seconds.
pub const DEFAULT_JWT_TTL_SECONDS: u64 = 300;
/// Longest accepted lifetime, in seconds (one day, the retry horizon).
pub const MAX_JWT_TTL_SECONDS: u64 = 86_400;
/// Default clock leeway when checking `exp` and `iat`, in seconds.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 60;
/// Longest accepted token, in bytes.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// The claims of a Herald webhook JWT, all required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaims {
    /// Issuer: the Herald deployment that sent the webhook.
    pub iss: String,
    /// Audience: the URL the webhook was sent to.
    pub aud: String,
    /// Issued at (Unix seconds): when this attempt was signed.
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// The `webhook-id`, the same on every retry.
    pub jti: String,
    /// base64url (no padding) SHA-256 of the exact body bytes.
    pub body_sha256: String,
}

/// The JWS algorithms Herald signs and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518).
    Rs256,
}

impl JwtAlgorithm {
    /// The `alg` header value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    fn parse(alg: &str) -> Option<Self> {
        match alg {
            "EdDSA" => Some(Self::EdDsa),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

/// base64url SHA-256 of `body`, as in the `body_sha256` claim.
#[must_use]
pub fn body_sha256(body: &[u8]) -> String {
    use sha2::Digest as _;
    crate::encoding::encode_url(&sha2::Sha256::digest(body))
}
