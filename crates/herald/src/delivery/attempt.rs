//! One attempt: sign, send, judge. Never fails: every problem becomes an
//! attempt outcome in the delivery log.

use std::sync::Arc;

use herald_signature::{JwtMessage, JwtSigner, Signer, SigningKey};

use super::client::{DeliveryClient, Response, SignedRequest};
use super::retry::{Jitter, Outcome, RetryPolicy};
use crate::clock::Clock;
use crate::domain::job_webhook::JobSignatureFormat;
use crate::domain::{AttemptErrorKind, AttemptRecord, SigningKind};
use crate::server_keys::Keyring;
use crate::store::{Completion, DeliveryJob, EndpointSnapshot};

/// Everything an attempt needs besides the job.
pub(super) struct AttemptContext<'a> {
    pub client: &'a DeliveryClient,
    pub policy: &'a RetryPolicy,
    pub clock: &'a dyn Clock,
    pub jitter: &'a dyn Jitter,
}

/// How an endpoint's requests are signed: with its own secrets
/// (Standard Webhooks `v1`/`v1a`), or, for a per-job webhook, with
/// Herald's own keys (`v1a` or a body-bound JWT).
pub(super) enum AnySigner {
    Standard(Signer),
    Jwt(JwtSigner),
}

impl AnySigner {
    /// The `webhook-signature` value for one attempt.
    fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8], audience: &str) -> Result<String, String> {
        match self {
            Self::Standard(signer) => signer.sign(webhook_id, timestamp, body).map_err(|e| e.to_string()),
            Self::Jwt(signer) => signer
                .sign(&JwtMessage {
                    audience,
                    msg_id: webhook_id,
                    issued_at: timestamp,
                    body,
                })
                .map_err(|e| e.to_string()),
        }
    }
}

/// The signer for an endpoint's current secrets, or why there is none.
pub(super) type EndpointSigner = Arc<Result<AnySigner, String>>;

/// The per-job signature format of `endpoint`, if it is a job's webhook.
pub(super) fn job_format(endpoint: &EndpointSnapshot) -> Option<JobSignatureFormat> {
    endpoint.secrets.iter().find_map(|secret| match secret.kind {
        SigningKind::Job(format) => Some(format),
        _ => None,
    })
}

/// `keyring`: Herald's own keys, needed for a job's webhook (and loaded by
/// the caller only when one is in the batch).
pub(super) fn signer_for(endpoint: &EndpointSnapshot, keyring: Option<&Keyring>) -> EndpointSigner {
    if let Some(format) = job_format(endpoint) {
        let Some(keyring) = keyring else {
            return Arc::new(Err("Herald's signing keys could not be loaded".into()));
        };
        return Arc::new(Ok(match format {
            JobSignatureFormat::Standard => AnySigner::Standard(keyring.standard.clone()),
            JobSignatureFormat::JwtRs256 => AnySigner::Jwt(keyring.rs256.clone()),
            JobSignatureFormat::JwtEdDsa => AnySigner::Jwt(keyring.eddsa.clone()),
        }));
    }
    let keys: Result<Vec<SigningKey>, String> = endpoint
        .secrets
        .iter()
        .map(|secret| match &secret.material {
            Ok(material) => Ok(material.signing_key().clone()),
            Err(e) => Err(format!("signing secret {} is unusable: {e}", secret.id)),
        })
        .collect();
    Arc::new(keys.and_then(|keys| {
        Signer::new(keys)
            .map(AnySigner::Standard)
            .map_err(|e| format!("cannot sign: {e}"))
    }))
}

pub(super) async fn attempt(context: &AttemptContext<'_>, job: &DeliveryJob, signer: &EndpointSigner) -> Completion {
    let start_time = context.clock.now();
    let webhook_id = job.event_id.to_string();
    let timestamp = start_time.as_unix_seconds();
    let signed = match signer.as_ref() {
        Ok(signer) => signer.sign(&webhook_id, timestamp, &job.payload, job.endpoint.uri.as_str()),
        Err(problem) => Err(problem.clone()),
    };
    let (response, duration) = match signed {
        Ok(signature) => {
            let request = SignedRequest {
                uri: &job.endpoint.uri,
                webhook_id: &webhook_id,
                webhook_timestamp: timestamp,
                webhook_signature: &signature,
                body: job.payload.clone(),
            };
            context.client.send(request).await
        }
        Err(message) => (
            Response::Failed {
                kind: AttemptErrorKind::Signing,
                message,
            },
            Default::default(),
        ),
    };
    let now = context.clock.now();
    let (record, outcome) = match response {
        Response::Status {
            code,
            retry_after,
            excerpt,
        } => {
            let success = (200..300).contains(&code);
            let record = AttemptRecord {
                number: job.attempt_number,
                start_time,
                duration,
                status_code: Some(code),
                response_excerpt: Some(excerpt).filter(|e| !e.is_empty()),
                error_kind: (!success).then_some(AttemptErrorKind::HttpStatus),
                error_message: (!success).then(|| format!("the endpoint answered {code}")),
            };
            let retry_after = retry_after.map(|asked| asked.delay_from(now));
            (record, Outcome::Status { code, retry_after })
        }
        Response::Failed { kind, message } => {
            let record = AttemptRecord {
                number: job.attempt_number,
                start_time,
                duration,
                status_code: None,
                response_excerpt: None,
                error_kind: Some(kind),
                error_message: Some(message),
            };
            (record, Outcome::NoResponse)
        }
    };
    record_metrics(&record);
    let policy = context.policy.with_schedule(job.endpoint.retry_schedule.as_ref());
    let decision = policy.decide(
        job.attempt_number,
        outcome,
        now,
        job.event_time,
        context.jitter.sample(),
    );
    if decision.next == crate::store::NextStep::Succeeded {
        metrics::histogram!("herald_delivery_latency_seconds").record(now.duration_since(job.event_time).as_secs_f64());
    }
    let last_error = record.error_kind.map(|kind| kind.as_str().to_owned());
    Completion {
        delivery_id: job.delivery_id,
        webhook_id: job.endpoint.webhook_id,
        lease: job.lease,
        attempt: Some(record),
        next: decision.next,
        last_error,
        disable_webhook: decision.disable_webhook,
        now,
        // The caller says whether the attempt was scheduled.
        health: None,
    }
}

fn record_metrics(record: &AttemptRecord) {
    let outcome = record.error_kind.map_or("success", AttemptErrorKind::as_str);
    metrics::counter!("herald_delivery_attempts_total", "outcome" => outcome).increment(1);
    metrics::histogram!("herald_delivery_attempt_duration_seconds").record(record.duration.as_secs_f64());
}
