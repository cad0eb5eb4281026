//! Per-job webhooks (`webhook_config` on a job's create): where a job's
//! events go besides (or instead of) the project's webhooks, and how they
//! are signed. Any job kind uses the same type: operations today, batches
//! next.
//!
//! Each URI is a hidden webhook row (shared by the project's jobs that name
//! the same URI and format), so deliveries are durable, retried, logged
//! and redeliverable like any other; they are signed with
//! Herald's own keys: the receiver never saw a shared secret and verifies
//! with the public keys at `/.well-known/jwks.json`.

use serde::{Deserialize, Serialize};

use super::fanout::Subscriber;
use super::{EndpointUri, Invalid, SubscribedEvents, WebhookId};

/// Most URIs in one `webhook_config`.
pub const MAX_URIS: usize = 10;

/// Whether the job's events also go to the project's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobWebhookMode {
    /// Only to the job's URIs (the default, as Gemini's dynamic webhooks).
    Override,
    /// To the job's URIs and to the project's subscribed webhooks.
    Additional,
}

/// How per-job deliveries are signed, with Herald's own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobSignatureFormat {
    /// Standard Webhooks `v1a` (Ed25519), one entry per published key.
    Standard,
    /// The body-bound JWT, RS256.
    JwtRs256,
    /// The body-bound JWT, EdDSA.
    JwtEdDsa,
}

impl JobSignatureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::JwtRs256 => "jwt_rs256",
            Self::JwtEdDsa => "jwt_eddsa",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Standard, Self::JwtRs256, Self::JwtEdDsa]
            .into_iter()
            .find(|format| format.as_str() == text)
    }
}

/// A validated `webhook_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobWebhookConfig {
    pub uris: Vec<EndpointUri>,
    pub user_metadata: Option<serde_json::Value>,
    pub mode: JobWebhookMode,
    pub format: JobSignatureFormat,
}

impl JobWebhookConfig {
    /// 1 to [`MAX_URIS`] distinct URIs (syntax only: the SSRF policy is
    /// the caller's, at create time, and the connector's at every attempt).
    pub fn new(
        uris: Vec<EndpointUri>,
        user_metadata: Option<serde_json::Value>,
        mode: JobWebhookMode,
        format: JobSignatureFormat,
    ) -> Result<Self, Invalid> {
        if uris.is_empty() || uris.len() > MAX_URIS {
            return Err(Invalid::new(format!("give 1 to {MAX_URIS} uris")));
        }
        for (i, uri) in uris.iter().enumerate() {
            if uris[..i].contains(uri) {
                return Err(Invalid::new(format!("{} is listed twice", uri.as_str())));
            }
        }
        if user_metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(Invalid::new("user_metadata must be a JSON object"));
        }
        Ok(Self {
            uris,
            user_metadata,
            mode,
            format,
        })
    }
}

/// The webhook rows a job's events go to, as its status keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobWebhooks {
    pub mode: JobWebhookMode,
    pub format: JobSignatureFormat,
    /// The hidden webhook rows, one per URI (ids as text).
    pub webhook_ids: Vec<String>,
}

impl JobWebhooks {
    /// Who receives the job's events: its own rows (every event type),
    /// plus, in `additional` mode, the project's subscribers. The one rule
    /// every backend applies; `project_subscribers` are loaded in the
    /// publishing transaction.
    pub fn recipients(&self, project_subscribers: Vec<Subscriber>) -> Vec<Subscriber> {
        let everything = SubscribedEvents::parse(&["*"]).unwrap_or_else(|_| unreachable!("\"*\" is a valid pattern"));
        let mut recipients: Vec<Subscriber> = self
            .webhook_ids
            .iter()
            .filter_map(|id| WebhookId::parse(id))
            .map(|id| Subscriber {
                id,
                events: everything.clone(),
            })
            .collect();
        if self.mode == JobWebhookMode::Additional {
            recipients.extend(project_subscribers);
        }
        recipients
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventType;

    fn uri(text: &str) -> EndpointUri {
        EndpointUri::parse(text).unwrap()
    }

    #[test]
    fn configs_are_validated() {
        let ok = JobWebhookConfig::new(
            vec![uri("https://a.example/"), uri("https://b.example/")],
            Some(serde_json::json!({"job": 1})),
            JobWebhookMode::Override,
            JobSignatureFormat::Standard,
        );
        assert!(ok.is_ok());
        let make = |uris: Vec<EndpointUri>, meta: Option<serde_json::Value>| {
            JobWebhookConfig::new(uris, meta, JobWebhookMode::Override, JobSignatureFormat::JwtRs256)
        };
        assert!(make(vec![], None).is_err());
        assert!(make(vec![uri("https://a.example/"); 2], None).is_err());
        assert!(make((0..11).map(|i| uri(&format!("https://h{i}.example/"))).collect(), None).is_err());
        assert!(make(vec![uri("https://a.example/")], Some(serde_json::json!([1]))).is_err());
        for format in [
            JobSignatureFormat::Standard,
            JobSignatureFormat::JwtRs256,
            JobSignatureFormat::JwtEdDsa,
        ] {
            assert_eq!(JobSignatureFormat::parse(format.as_str()), Some(format));
        }
    }

    #[test]
    fn override_sends_only_to_the_job_and_additional_to_both() {
        let job = WebhookId::generate();
        let project = Subscriber {
            id: WebhookId::generate(),
            events: SubscribedEvents::parse(&["operation.*"]).unwrap(),
        };
        let mut webhooks = JobWebhooks {
            mode: JobWebhookMode::Override,
            format: JobSignatureFormat::Standard,
            webhook_ids: vec![job.to_string()],
        };
        let event = EventType::parse("operation.succeeded").unwrap();
        let ids = |recipients: Vec<Subscriber>| -> Vec<WebhookId> {
            crate::domain::fanout::recipients(&event, &recipients).collect()
        };
        assert_eq!(ids(webhooks.recipients(vec![project.clone()])), [job]);
        webhooks.mode = JobWebhookMode::Additional;
        assert_eq!(ids(webhooks.recipients(vec![project.clone()])), [job, project.id]);
    }
}
