//! Who is calling: the admin (manages projects and their keys) or a
//! project (manages its own webhooks and events, nothing else).
//!
//! Keys are 256-bit random tokens; only their SHA-256 is stored. A lookup
//! cache spares the database on every publish; it holds an entry for at most
//! `CACHE_TTL`, so a key revoked on another node stops working within that
//! time (and at once on the node that revoked it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::domain::{ApiKeyId, ProjectId};

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX_ENTRIES: usize = 10_000;
/// Prefix of project API keys, so that leaked keys are recognisable.
pub const API_KEY_PREFIX: &str = "hrk_";
/// The header Google's API clients (google-genai) send the key in.
const GOOG_API_KEY: &str = "x-goog-api-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Project(ProjectId),
}

impl Principal {
    pub fn require_admin(self) -> Result<(), ApiError> {
        match self {
            Self::Admin => Ok(()),
            Self::Project(_) => Err(ApiError::PermissionDenied("this endpoint needs the admin key".into())),
        }
    }

    pub fn require_project(self) -> Result<ProjectId, ApiError> {
        match self {
            Self::Project(project) => Ok(project),
            Self::Admin => Err(ApiError::PermissionDenied(
                "this endpoint needs a project API key (POST /v1/projects/{id}/api_keys makes one)".into(),
            )),
        }
    }
}

/// A new project API key: the secret to show once, and the hash to store.
pub fn generate_api_key() -> (String, [u8; 32]) {
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let hash = hash_key(&key);
    (key, hash)
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks bearer tokens against the admin key and the stored project keys.
pub struct Authenticator {
    admin_key_hash: [u8; 32],
    cache: Mutex<HashMap<[u8; 32], (ApiKeyId, ProjectId, Instant)>>,
}

impl Authenticator {
    pub fn new(admin_key: &str) -> Self {
        Self::from_hash(hash_key(admin_key))
    }

    /// Accepts as admin the key whose SHA-256 is `admin_key_hash`.
    pub fn from_hash(admin_key_hash: [u8; 32]) -> Self {
        Self {
            admin_key_hash,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets a revoked key at once on this node.
    pub fn forget(&self, key: ApiKeyId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (id, _, _)| *id != key);
        }
    }

    async fn authenticate(&self, token: &str, state: &AppState) -> Result<Principal, ApiError> {
        let hash = hash_key(token);
        // Compare hashes in constant time: equal-length, no early exit.
        if bool::from(hash.ct_eq(&self.admin_key_hash)) {
            return Ok(Principal::Admin);
        }
        if let Some(project) = self.cached(&hash) {
            return Ok(Principal::Project(project));
        }
        match state.store.find_api_key(hash).await? {
            Some((id, project)) => {
                if let Ok(mut cache) = self.cache.lock() {
                    if cache.len() >= CACHE_MAX_ENTRIES {
                        cache.clear();
                    }
                    cache.insert(hash, (id, project, Instant::now()));
                }
                Ok(Principal::Project(project))
            }
            None => Err(ApiError::Unauthenticated(
                "the API key is not valid (unknown or revoked)".into(),
            )),
        }
    }

    fn cached(&self, hash: &[u8; 32]) -> Option<ProjectId> {
        let cache = self.cache.lock().ok()?;
        let (_, project, since) = cache.get(hash)?;
        (since.elapsed() < CACHE_TTL).then_some(*project)
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    /// The key comes in `Authorization: Bearer <key>` or, as Google's
    /// clients send it, `x-goog-api-key: <key>`; never both.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts.headers.get(AUTHORIZATION);
        let goog = parts.headers.get(GOOG_API_KEY);
        let token = match (bearer, goog) {
            (Some(_), Some(_)) => {
                return Err(ApiError::Unauthenticated(
                    "send the API key in one header: Authorization or x-goog-api-key, not both".into(),
                ));
            }
            (None, None) => {
                return Err(ApiError::Unauthenticated(
                    "send an API key: Authorization: Bearer <key> (or x-goog-api-key: <key>)".into(),
                ));
            }
            // The scheme name is case-insensitive (RFC 9110 §11.1).
            (Some(header), None) => header
                .to_str()
                .ok()
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|token| !token.is_empty())
                .ok_or_else(|| ApiError::Unauthenticated("the Authorization header must be `Bearer <key>`".into()))?,
            (None, Some(header)) => header
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .ok_or_else(|| ApiError::Unauthenticated("the x-goog-api-key header must hold the key".into()))?,
        };
        state.auth.authenticate(token, state).await
    }
}
