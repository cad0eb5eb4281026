//! Herald's public keys and their rotation.
//!
//! `GET /.well-known/jwks.json` needs no credentials: it is what receivers
//! of per-job webhooks verify with. It may be cached for five minutes,
//! well inside a rotation's overlap, so a cached set always holds the key
//! that signed. `GET /v1/signing_keys` and `POST /v1/signing_keys:rotate`
//! are for the admin key.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::ApiError;
use super::json::OptionalJsonBody;
use crate::server_keys::{DEFAULT_OVERLAP, KeyInfo};

/// How long receivers and proxies may cache the JWKS.
const JWKS_MAX_AGE_SECS: u64 = 300;

pub(super) async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keyring = state.server_keys.keyring().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CACHE_CONTROL, format!("public, max-age={JWKS_MAX_AGE_SECS}")),
        ],
        keyring.jwks.to_json(),
    )
        .into_response())
}

#[derive(Serialize)]
pub(super) struct KeyList {
    signing_keys: Vec<KeyInfo>,
}

pub(super) async fn list_keys(State(state): State<AppState>, principal: Principal) -> Result<Json<KeyList>, ApiError> {
    principal.require_admin()?;
    let keyring = state.server_keys.keyring().await?;
    Ok(Json(KeyList {
        signing_keys: keyring.keys.clone(),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Rotate {
    /// How long the previous keys stay published (and sign `v1a`), e.g.
    /// `"24h"` (the default) or `"0s"` to retire them at once.
    #[serde(default)]
    overlap: Option<String>,
}

pub(super) async fn rotate(
    State(state): State<AppState>,
    principal: Principal,
    OptionalJsonBody(body): OptionalJsonBody<Rotate>,
) -> Result<Json<KeyList>, ApiError> {
    principal.require_admin()?;
    let overlap = match &body.overlap {
        None => DEFAULT_OVERLAP,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .filter(|overlap| *overlap <= std::time::Duration::from_secs(30 * 24 * 3600))
            .ok_or_else(|| ApiError::invalid("overlap", "expected a duration from \"0s\" to \"30d\""))?,
    };
    // Make sure a first key exists, so that a rotation always has a predecessor to publish.
    state.server_keys.keyring().await?;
    let keyring = state.server_keys.rotate(overlap).await?;
    Ok(Json(KeyList {
        signing_keys: keyring.keys.clone(),
    }))
}
