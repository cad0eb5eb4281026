//! Verifying body-bound webhook JWTs against a JWKS.
//!
//! Order of checks: token size and compact structure (three non-empty
//! canonical base64url segments); header JSON with only `alg`, `typ`
//! (`JWT`) and `kid`; `alg` is `EdDSA` or `RS256` (never `none`); `kid`
//! selects a trusted key whose type matches `alg` (no algorithm
//! confusion); the signature; only then the claims: types, `iss` (if
//! configured), `aud`, a lifetime (`exp − iat`) of at most a day, `exp`,
//! `iat` and `nbf` (if present) against the clock with leeway, `jti`
//! against `webhook-id` (required when verifying headers), and the body hash.

use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{DEFAULT_JWT_LEEWAY_SECONDS, JwtAlgorithm, JwtClaims, MAX_JWT_LEN, body_sha256};
use crate::clock::{Clock, SystemClock};
use crate::encoding;
use crate::error::JwtError;
use crate::header::{HeaderSource, WEBHOOK_ID, WEBHOOK_SIGNATURE};
use crate::jwks::JwkSet;
use crate::keys::PublicKey;
use crate::replay::ReplayGuard;

/// Verifies webhook JWTs for one audience against a trusted key set.
/// Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct JwtVerifier {
    keys: Arc<JwkSet>,
    audience: Arc<str>,
    issuer: Option<Arc<str>>,
    leeway_seconds: u64,
    clock: Arc<dyn Clock>,
}

/// Only these members; anything else (`crit`, `jku`, `jwk`, `x5u`…) makes
/// the token malformed rather than silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

/// Claims as received: every field optional so that a missing one gets its
/// own error; unknown claims are ignored (RFC 7519 §4); a duplicated claim
/// is a parse error.
#[derive(Deserialize)]
struct ReceivedClaims {
    iss: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    /// Not emitted by Herald, but a registered claim: honoured if present.
    nbf: Option<i64>,
    jti: Option<String>,
    body_sha256: Option<String>,
}

impl JwtVerifier {
    /// Accepts tokens signed by a key of `keys` for `audience` (the URL the
    /// receiver is reachable at, exactly as the sender was configured).
    #[must_use]
    pub fn new(keys: JwkSet, audience: &str) -> Self {
        Self {
            keys: Arc::new(keys),
            audience: audience.into(),
            issuer: None,
            leeway_seconds: DEFAULT_JWT_LEEWAY_SECONDS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Also require `iss` to equal `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Clock leeway for `exp` and `iat`, in seconds (default 60).
    #[must_use]
    pub fn with_leeway_seconds(mut self, seconds: u64) -> Self {
        self.leeway_seconds = seconds;
        self
    }

    /// Read "now" from `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Verifies the JWT in `webhook-signature` against `body`; the
    /// `webhook-id` header is required and `jti` must equal it.
    ///
    /// # Errors
    /// [`JwtError::MissingHeader`] or the first failed check.
    pub fn verify_headers<H: HeaderSource + ?Sized>(&self, headers: &H, body: &[u8]) -> Result<VerifiedJwt, JwtError> {
        self.verify_headers_at(headers, body, self.clock.now_unix_seconds())
    }

    /// [`JwtVerifier::verify_headers`] as if the current time were `now`.
    ///
    /// # Errors
    /// As [`JwtVerifier::verify_headers`].
    pub fn verify_headers_at<H: HeaderSource + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedJwt, JwtError> {
        let ascii = |name: &'static str| {
            headers
                .header(name)
                .map(|bytes| std::str::from_utf8(bytes).ok().filter(|text| text.is_ascii()))
        };
        let token = ascii(WEBHOOK_SIGNATURE).flatten().ok_or(JwtError::MissingHeader {
            name: WEBHOOK_SIGNATURE,
        })?;
        let webhook_id = ascii(WEBHOOK_ID)
            .flatten()
            .ok_or(JwtError::MissingHeader { name: WEBHOOK_ID })?;
        self.verify_at(token, body, Some(webhook_id), now)
    }

    /// Verifies `token` against `body` at the clock's current time.
    ///
    /// # Errors
    /// The first failed check, as a [`JwtError`].
    pub fn verify(&self, token: &str, body: &[u8], webhook_id: Option<&str>) -> Result<VerifiedJwt, JwtError> {
        self.verify_at(token, body, webhook_id, self.clock.now_unix_seconds())
    }

    /// Verifies as if the current time were `now`.
    ///
    /// # Errors
    /// The first failed check, as a [`JwtError`].
    pub fn verify_at(
        &self,
        token: &str,
        body: &[u8],
        webhook_id: Option<&str>,
        now: i64,
    ) -> Result<VerifiedJwt, JwtError> {
        let (kid, algorithm, claims) = self.verify_signature(token)?;
        let claims = self.check_claims(claims, body, webhook_id, now)?;
        Ok(VerifiedJwt {
            kid,
            algorithm,
            claims,
            verified_at: now,
            leeway_seconds: self.leeway_seconds,
        })
    }

    /// Structure, header, key selection and signature; returns the claims
    /// segment decoded but not yet trusted for anything but parsing.
    fn verify_signature(&self, token: &str) -> Result<(String, JwtAlgorithm, Vec<u8>), JwtError> {
        if token.len() > MAX_JWT_LEN {
            return Err(malformed("longer than 16 KiB"));
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(malformed("not three dot-separated segments"));
        };
        let header_json = decode_segment(header_b64, "header")?;
        let header: Header =
            serde_json::from_slice(&header_json).map_err(|error| malformed(&format!("header: {error}")))?;
        let algorithm =
            JwtAlgorithm::parse(&header.alg).ok_or_else(|| JwtError::UnsupportedAlgorithm(header.alg.clone()))?;
        if header.typ.as_deref().is_some_and(|typ| typ != "JWT") {
            return Err(malformed("header typ is not JWT"));
        }
        let kid = header.kid.ok_or_else(|| malformed("header has no kid"))?;
        let key = self.keys.get(&kid).ok_or_else(|| JwtError::UnknownKeyId(kid.clone()))?;
        let signature = decode_segment(signature_b64, "signature")?;
        let signing_input = &token.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
        let valid = match (algorithm, key) {
            (JwtAlgorithm::EdDsa, PublicKey::Ed25519(key)) => {
                let signature: [u8; 64] = signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| JwtError::BadSignature { kid: kid.clone() })?;
                key.verify_parts(&[signing_input], &signature)
            }
            (JwtAlgorithm::Rs256, PublicKey::Rsa(key)) => key.verify_rs256(signing_input, &signature),
            (_, PublicKey::Ed25519(_)) => return Err(mismatch(algorithm, kid, "Ed25519")),
            (_, PublicKey::Rsa(_)) => return Err(mismatch(algorithm, kid, "RSA")),
        };
        if !valid {
            return Err(JwtError::BadSignature { kid });
        }
        let claims = decode_segment(claims_b64, "claims")?;
        Ok((kid, algorithm, claims))
    }

    fn check_claims(
        &self,
        claims_json: Vec<u8>,
        body: &[u8],
        webhook_id: Option<&str>,
        now: i64,
    ) -> Result<JwtClaims, JwtError> {
        let claims: ReceivedClaims =
            serde_json::from_slice(&claims_json).map_err(|error| malformed(&format!("claims: {error}")))?;
        let iss = claims.iss.ok_or(JwtError::MissingClaim("iss"))?;
        let aud = claims.aud.ok_or(JwtError::MissingClaim("aud"))?;
        let iat = claims.iat.ok_or(JwtError::MissingClaim("iat"))?;
        let exp = claims.exp.ok_or(JwtError::MissingClaim("exp"))?;
        let jti = claims.jti.ok_or(JwtError::MissingClaim("jti"))?;
        let body_hash = claims.body_sha256.ok_or(JwtError::UnboundBody)?;
        if let Some(expected) = &self.issuer
            && iss != **expected
        {
            return Err(JwtError::WrongIssuer {
                expected: expected.to_string(),
                found: iss,
            });
        }
        if aud != *self.audience {
            return Err(JwtError::WrongAudience {
                expected: self.audience.to_string(),
                found: aud,
            });
        }
        if exp < iat {
            return Err(malformed("exp is before iat"));
        }
        if i128::from(exp) - i128::from(iat) > i128::from(super::MAX_JWT_TTL_SECONDS) {
            return Err(malformed("the lifetime (exp - iat) is over 86400 s"));
        }
        let leeway = self.leeway_seconds;
        if i128::from(now) > i128::from(exp) + i128::from(leeway) {
            return Err(JwtError::Expired { exp, now, leeway });
        }
        if i128::from(iat) > i128::from(now) + i128::from(leeway) {
            return Err(JwtError::IssuedInFuture { iat, now, leeway });
        }
        if let Some(nbf) = claims.nbf
            && i128::from(nbf) > i128::from(now) + i128::from(leeway)
        {
            return Err(JwtError::NotYetValid { nbf, now, leeway });
        }
        if let Some(expected) = webhook_id
            && jti != expected
        {
            return Err(JwtError::IdMismatch {
                expected: expected.to_owned(),
                found: jti,
            });
        }
        if !bool::from(body_hash.as_bytes().ct_eq(body_sha256(body).as_bytes())) {
            return Err(JwtError::BodyMismatch);
        }
        Ok(JwtClaims {
            iss,
            aud,
            iat,
            exp,
            jti,
            body_sha256: body_hash,
        })
    }
}

fn decode_segment(segment: &str, name: &str) -> Result<Vec<u8>, JwtError> {
    if segment.is_empty() {
        return Err(malformed(&format!("empty {name} segment")));
    }
    encoding::decode_url(segment)
        .map_err(|problem| malformed(&format!("{name} is not base64url without padding: {problem}")))
}

fn malformed(problem: &str) -> JwtError {
    JwtError::Malformed(problem.to_owned())
}

fn mismatch(algorithm: JwtAlgorithm, kid: String, key_type: &'static str) -> JwtError {
    JwtError::AlgorithmMismatch {
        alg: algorithm.as_str().to_owned(),
        kid,
        key_type,
    }
}

/// A JWT that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedJwt {
    kid: String,
    algorithm: JwtAlgorithm,
    claims: JwtClaims,
    verified_at: i64,
    leeway_seconds: u64,
}

impl VerifiedJwt {
    /// The `kid` of the key that verified it.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its algorithm.
    #[must_use]
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// Its claims.
    #[must_use]
    pub fn claims(&self) -> &JwtClaims {
        &self.claims
    }

    /// Records `jti` in `guard` until `exp` plus the leeway, after which the
    /// token is refused as expired anyway.
    ///
    /// # Errors
    /// The guard's [`ReplayError`](crate::ReplayError).
    pub fn record(&self, guard: &dyn ReplayGuard) -> Result<(), crate::ReplayError> {
        let expires_at = self.claims.exp.saturating_add_unsigned(self.leeway_seconds);
        guard.check_and_record(&self.claims.jti, expires_at, self.verified_at)
    }
}
