//! `webhook_config`: Herald's per-job webhooks extension, the same body on
//! every job kind that accepts it (operations, batches). Parsed here into
//! the one domain type, `domain::job_webhook::JobWebhookConfig`.

use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::domain::job_webhook::{JobSignatureFormat, JobWebhookConfig, JobWebhookMode};

/// `webhook_config`: per-job webhooks (see `domain::job_webhook`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookConfigBody {
    uris: Vec<String>,
    #[serde(default)]
    user_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// `override` (default) or `additional`.
    #[serde(default)]
    mode: Option<String>,
    /// `standard` (default) or `jwt`.
    #[serde(default)]
    signature_format: Option<String>,
    /// For `jwt`: `RS256` (default) or `EdDSA`.
    #[serde(default)]
    jwt_algorithm: Option<String>,
}

/// Validates `webhook_config` (each URI through the same SSRF policy as
/// webhooks).
pub(super) fn webhook_config(state: &AppState, body: WebhookConfigBody) -> Result<JobWebhookConfig, ApiError> {
    let uris = body
        .uris
        .iter()
        .enumerate()
        .map(|(i, text)| super::webhooks::vetted_uri(state, text, &format!("webhook_config.uris[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = match body.mode.as_deref() {
        None | Some("override") => JobWebhookMode::Override,
        Some("additional") => JobWebhookMode::Additional,
        Some(_) => {
            return Err(ApiError::invalid(
                "webhook_config.mode",
                "expected \"override\" or \"additional\"",
            ));
        }
    };
    let format = match (body.signature_format.as_deref(), body.jwt_algorithm.as_deref()) {
        (None | Some("standard"), None) => JobSignatureFormat::Standard,
        (Some("jwt"), None | Some("RS256")) => JobSignatureFormat::JwtRs256,
        (Some("jwt"), Some("EdDSA")) => JobSignatureFormat::JwtEdDsa,
        (Some("jwt"), Some(_)) => {
            return Err(ApiError::invalid(
                "webhook_config.jwt_algorithm",
                "expected \"RS256\" or \"EdDSA\"",
            ));
        }
        (None | Some("standard"), Some(_)) => {
            return Err(ApiError::invalid(
                "webhook_config.jwt_algorithm",
                "only with signature_format \"jwt\"",
            ));
        }
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "webhook_config.signature_format",
                "expected \"standard\" or \"jwt\"",
            ));
        }
    };
    JobWebhookConfig::new(uris, body.user_metadata.map(serde_json::Value::Object), mode, format)
        .map_err(ApiError::invalid_field("webhook_config.uris"))
}
