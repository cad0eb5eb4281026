//! Signing body-bound webhook JWTs.

use std::sync::Arc;

use serde::Serialize;

use super::{DEFAULT_JWT_TTL_SECONDS, JwtAlgorithm, MAX_JWT_TTL_SECONDS, body_sha256};
use crate::encoding;
use crate::error::JwtError;
use crate::keys::{Ed25519SecretKey, KeyId, PublicKey, RsaPrivateKey};
use crate::message;

/// The private key of a JWT signer.
#[derive(Clone, Debug)]
pub enum JwtSigningKey {
    /// Signs with alg `EdDSA`.
    Ed25519(Ed25519SecretKey),
    /// Signs with alg `RS256`.
    Rsa(RsaPrivateKey),
}

impl JwtSigningKey {
    /// The algorithm this key signs with.
    #[must_use]
    pub fn algorithm(&self) -> JwtAlgorithm {
        match self {
            Self::Ed25519(_) => JwtAlgorithm::EdDsa,
            Self::Rsa(_) => JwtAlgorithm::Rs256,
        }
    }

    /// The public key to publish in the JWKS.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::Ed25519(key) => PublicKey::Ed25519(key.public_key()),
            Self::Rsa(key) => PublicKey::Rsa(key.public_key()),
        }
    }
}

/// What one JWT is about.
#[derive(Clone, Copy, Debug)]
pub struct JwtMessage<'a> {
    /// The URL the webhook is sent to (`aud`).
    pub audience: &'a str,
    /// The `webhook-id` (`jti`); same rules as for Standard Webhooks ids.
    pub msg_id: &'a str,
    /// Unix seconds of this attempt (`iat`).
    pub issued_at: i64,
    /// The exact body bytes that will be sent (hashed into `body_sha256`).
    pub body: &'a [u8],
}

/// Signs webhook JWTs with one key. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct JwtSigner {
    kid: KeyId,
    key: Arc<JwtSigningKey>,
    issuer: Arc<str>,
    ttl_seconds: u64,
    /// base64url of the header, the same for every token of this signer.
    encoded_header: Arc<str>,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    body_sha256: String,
}

impl JwtSigner {
    /// A signer for `key`, published under `kid`, issuing as `issuer`, with
    /// the default 300-second lifetime.
    ///
    /// # Errors
    /// [`JwtError::InvalidInput`] for an empty issuer.
    pub fn new(kid: KeyId, key: JwtSigningKey, issuer: &str) -> Result<Self, JwtError> {
        if issuer.is_empty() {
            return Err(JwtError::InvalidInput("issuer is empty".to_owned()));
        }
        let header = Header {
            alg: key.algorithm().as_str(),
            typ: "JWT",
            kid: kid.as_str(),
        };
        let header_json = serde_json::to_vec(&header).map_err(|error| JwtError::InvalidInput(error.to_string()))?;
        Ok(Self {
            encoded_header: encoding::encode_url(&header_json).into(),
            kid,
            key: Arc::new(key),
            issuer: issuer.into(),
            ttl_seconds: DEFAULT_JWT_TTL_SECONDS,
        })
    }

    /// Tokens expire `seconds` after `iat` (1 to 86 400).
    ///
    /// # Errors
    /// [`JwtError::InvalidInput`] outside that range.
    pub fn with_ttl_seconds(mut self, seconds: u64) -> Result<Self, JwtError> {
        if seconds == 0 || seconds > MAX_JWT_TTL_SECONDS {
            return Err(JwtError::InvalidInput(format!(
                "ttl must be 1 to {MAX_JWT_TTL_SECONDS} seconds"
            )));
        }
        self.ttl_seconds = seconds;
        Ok(self)
    }

    /// The key id in the JWS header.
    #[must_use]
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The public key to publish under [`JwtSigner::kid`].
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The compact JWS for `message`.
    ///
    /// # Errors
    /// [`JwtError::InvalidInput`] for an empty audience, an invalid id or a
    /// negative or overflowing time; [`JwtError::Crypto`] if signing fails.
    pub fn sign(&self, message: &JwtMessage<'_>) -> Result<String, JwtError> {
        if message.audience.is_empty() {
            return Err(JwtError::InvalidInput("audience is empty".to_owned()));
        }
        message::validate_id(message.msg_id).map_err(|error| JwtError::InvalidInput(error.to_string()))?;
        if message.issued_at < 0 {
            return Err(JwtError::InvalidInput("issued_at is negative".to_owned()));
        }
        let expires_at = message
            .issued_at
            .checked_add_unsigned(self.ttl_seconds)
            .ok_or_else(|| JwtError::InvalidInput("issued_at + ttl overflows".to_owned()))?;
        let claims = Claims {
            iss: &self.issuer,
            aud: message.audience,
            iat: message.issued_at,
            exp: expires_at,
            jti: message.msg_id,
            body_sha256: body_sha256(message.body),
        };
        let claims_json = serde_json::to_vec(&claims).map_err(|error| JwtError::InvalidInput(error.to_string()))?;
        let mut token = String::with_capacity(self.encoded_header.len() + 4 * claims_json.len() / 3 + 400);
        token.push_str(&self.encoded_header);
        token.push('.');
        token.push_str(&encoding::encode_url(&claims_json));
        let signature = match self.key.as_ref() {
            JwtSigningKey::Ed25519(key) => key.sign_parts(&[token.as_bytes()]).map(Vec::from),
            JwtSigningKey::Rsa(key) => key.sign_rs256(token.as_bytes()),
        }
        .map_err(JwtError::Crypto)?;
        token.push('.');
        token.push_str(&encoding::encode_url(&signature));
        Ok(token)
    }
}
