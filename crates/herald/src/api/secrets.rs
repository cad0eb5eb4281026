//! `POST /v1/webhooks/{id}:rotateSigningSecret` (dispatched by
//! `webhooks::custom_method`): a new signing secret, shown once; the
//! replaced ones keep signing for 24 hours or stop at once.

use axum::Json;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, echo};
use crate::domain::ProjectId;
use crate::domain::secret::RevocationBehavior;
use crate::store::RotateSigningSecret;

/// `:rotateSigningSecret`'s body; empty, `{}` (what the google-genai SDK
/// sends by default) and `{"revocation_behavior": null}` all mean the
/// default behaviour.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RotateBody {
    revocation_behavior: Option<String>,
}

/// The new secret, shown this once: an HMAC webhook's `secret`, or an
/// Ed25519 webhook's new `public_key` (Herald keeps the private key).
#[derive(Serialize)]
pub(super) struct RotatedView {
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

pub(super) async fn rotate_signing_secret(
    state: &AppState,
    project: ProjectId,
    id: &str,
    body: RotateBody,
) -> Result<Json<RotatedView>, ApiError> {
    let behavior = match body.revocation_behavior.as_deref() {
        None => RevocationBehavior::default(),
        Some(text) => RevocationBehavior::parse(text).ok_or_else(|| {
            ApiError::invalid(
                "revocation_behavior",
                format!(
                    "{} is not a revocation behavior (expected revoke_previous_secrets_after_h24 or revoke_previous_secrets_immediately)",
                    echo(text)
                ),
            )
        })?,
    };
    let webhook = super::webhooks::load(state, project, id).await?;
    let secret = super::webhooks::new_secret(webhook.signing)?;
    let view = RotatedView {
        secret: secret.material.reveal_once().map(|text| text.to_string()),
        public_key: secret.material.public_key(),
    };
    let now = state.clock.now();
    state
        .store
        .rotate_signing_secret(RotateSigningSecret {
            project_id: project,
            webhook_id: webhook.id,
            secret,
            previous_expire_time: behavior.previous_expire_time(now),
            now,
        })
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))?;
    Ok(Json(view))
}
