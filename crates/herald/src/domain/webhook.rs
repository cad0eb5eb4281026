//! Webhook endpoints: where events are delivered and how they are signed.

use std::fmt;

use super::{Invalid, ProjectId, SecretId, SubscribedEvents, Timestamp, WebhookId, project::Name};

const MAX_URI_LEN: usize = 2048;

/// An endpoint URL: absolute `http` or `https`, with a host, without
/// credentials or fragment, at most 2048 bytes, normalised by the WHATWG URL
/// parser (so `http://0x7f.1/` is stored as `http://127.0.0.1/` and cannot
/// hide an address from the SSRF check).
///
/// Syntax only: whether the address may be called is the SSRF policy's
/// decision (`net::ssrf`), made at create time for literal addresses and
/// again at connect time for every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUri(url::Url);

impl EndpointUri {
    pub fn parse(text: &str) -> Result<Self, Invalid> {
        if text.len() > MAX_URI_LEN {
            return Err(Invalid::new(format!("a URI must be at most {MAX_URI_LEN} bytes")));
        }
        // The WHATWG parser silently drops or re-encodes these (a CR LF
        // becomes part of the path, a trailing NUL disappears): refuse what
        // was sent rather than store something else.
        if let Some(bad) = text.chars().find(|c| c.is_control()) {
            return Err(Invalid::new(format!(
                "the URI must not contain control characters (found U+{:04X})",
                u32::from(bad)
            )));
        }
        let url = url::Url::parse(text).map_err(|e| Invalid::new(format!("not a valid absolute URI: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Invalid::new(format!(
                "the URI scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        match url.host() {
            None => return Err(Invalid::new("the URI must have a host")),
            Some(url::Host::Domain(name)) => check_host_name(name)?,
            Some(_) => {}
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                "the URI must not contain credentials; use a path secret or verify signatures instead",
            ));
        }
        if url.fragment().is_some() {
            return Err(Invalid::new("the URI must not contain a fragment (#...)"));
        }
        if url.port() == Some(0) {
            return Err(Invalid::new("port 0 cannot be connected to"));
        }
        // Normalising percent-encodes non-ASCII, so check the stored form too.
        if url.as_str().len() > MAX_URI_LEN {
            return Err(Invalid::new(format!(
                "the URI must be at most {MAX_URI_LEN} bytes once percent-encoded"
            )));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> Option<url::Host<&str>> {
        self.0.host()
    }
}

const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// DNS limits (RFC 1035): a name of at most 253 characters (without the
/// root's trailing dot), each label at most 63. Checked on the parsed,
/// punycode form, which is what is resolved.
fn check_host_name(name: &str) -> Result<(), Invalid> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_HOST_LEN {
        return Err(Invalid::new(format!(
            "the host name is {} characters long; DNS allows at most {MAX_HOST_LEN}",
            name.len()
        )));
    }
    if name.split('.').any(|label| label.len() > MAX_LABEL_LEN) {
        return Err(Invalid::new(format!(
            "a label of the host name is longer than the {MAX_LABEL_LEN} characters DNS allows"
        )));
    }
    Ok(())
}

impl fmt::Display for EndpointUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Whether a webhook receives deliveries.
///
/// Deliveries to a webhook that is not `Enabled` are held, not attempted and
/// not failed: they resume when it is enabled again. New events are not
/// fanned out to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    Enabled,
    /// Disabled by a user, or by Herald when the endpoint answered `410 Gone`.
    Disabled,
    /// Disabled by Herald after failing deliveries for too long (auto-disable).
    DisabledDueToFailedDeliveries,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::DisabledDueToFailedDeliveries => "disabled_due_to_failed_deliveries",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "enabled" => Some(Self::Enabled),
            "disabled" => Some(Self::Disabled),
            "disabled_due_to_failed_deliveries" => Some(Self::DisabledDueToFailedDeliveries),
            _ => None,
        }
    }
}

/// How a webhook's deliveries are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKind {
    /// Standard Webhooks `v1`: HMAC-SHA256 with a shared `whsec_` secret.
    Hmac,
    /// Standard Webhooks `v1a`: Ed25519; Herald keeps the `whsk_` secret key and
    /// gives out the `whpk_` public key.
    Ed25519,
    /// A per-job webhook: signed with Herald's own keys (published in the
    /// JWKS) in this format; its secret row holds no key material.
    Job(super::job_webhook::JobSignatureFormat),
}

impl SigningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hmac => "hmac",
            Self::Ed25519 => "ed25519",
            Self::Job(super::job_webhook::JobSignatureFormat::Standard) => "job_standard",
            Self::Job(super::job_webhook::JobSignatureFormat::JwtRs256) => "job_jwt_rs256",
            Self::Job(super::job_webhook::JobSignatureFormat::JwtEdDsa) => "job_jwt_eddsa",
        }
    }

    /// Any stored kind, per-job ones included.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "hmac" => Some(Self::Hmac),
            "ed25519" => Some(Self::Ed25519),
            _ => text
                .strip_prefix("job_")
                .and_then(super::job_webhook::JobSignatureFormat::parse)
                .map(Self::Job),
        }
    }

    /// A kind a user may choose for a project webhook.
    pub fn parse_user_choice(text: &str) -> Option<Self> {
        Self::parse(text).filter(|kind| !matches!(kind, Self::Job(_)))
    }
}

/// What the API shows of one signing secret: never the secret itself.
#[derive(Debug, Clone)]
pub struct SigningSecretInfo {
    pub id: SecretId,
    /// The first characters of the secret (`whsec_AbCd…`) for HMAC, or the
    /// whole public key (`whpk_…`) for Ed25519.
    pub display: String,
    pub public_key: Option<String>,
    pub create_time: Timestamp,
    /// When the secret stops signing; `None` while it is the current one.
    pub expire_time: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: WebhookId,
    pub project_id: ProjectId,
    pub name: Name,
    pub uri: EndpointUri,
    pub subscribed_events: SubscribedEvents,
    pub state: WebhookState,
    /// Why the webhook is disabled, when Herald disabled it.
    pub state_reason: Option<String>,
    pub signing: SigningKind,
    pub signing_secrets: Vec<SigningSecretInfo>,
    /// Rate limit, concurrency limit, ordering and retry schedule.
    pub controls: super::controls::EndpointControls,
    pub create_time: Timestamp,
    pub update_time: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_validated_and_normalised() {
        let uri = EndpointUri::parse("http://0x7f.1/hook").expect("valid");
        assert_eq!(uri.as_str(), "http://127.0.0.1/hook");
        let uri = EndpointUri::parse("http://2130706433/").expect("valid");
        assert_eq!(uri.as_str(), "http://127.0.0.1/");
        for bad in [
            "ftp://example.com/",
            "not a url",
            "/relative",
            "http://user:pw@example.com/",
            "https://example.com/#frag",
            "file:///etc/passwd",
        ] {
            assert!(EndpointUri::parse(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2100));
        assert!(EndpointUri::parse(&long).is_err());
        // Short as typed, too long once percent-encoded (é becomes %C3%A9).
        let encoded = format!("https://example.com/{}", "é".repeat(1000));
        assert!(encoded.len() <= 2048);
        assert!(EndpointUri::parse(&encoded).is_err());
        assert!(EndpointUri::parse("http://example.com:0/").is_err());
    }

    #[test]
    fn control_characters_and_over_long_hosts_are_refused_not_rewritten() {
        for bad in [
            "http://127.0.0.1:19100/\r\nX-Injected: 1",
            "http://127.0.0.1:19100/\0",
            "http://example.com/a\tb",
            "http://example.com/\u{7f}",
            "http://example.com/\u{85}",
        ] {
            let error = EndpointUri::parse(bad).expect_err(bad);
            assert!(error.message.contains("control characters"), "{}", error.message);
        }
        let label = "a".repeat(63);
        let longest = format!("http://{label}.{label}.{label}.{}/", "b".repeat(61));
        assert!(EndpointUri::parse(&longest).is_ok(), "253 characters are allowed");
        let too_long = format!("http://{label}.{label}.{label}.{}/", "b".repeat(62));
        assert!(EndpointUri::parse(&too_long).is_err());
        assert!(EndpointUri::parse(&format!("http://{}.example.com/", "a".repeat(64))).is_err());
        assert!(EndpointUri::parse(&format!("http://{}/", "a.".repeat(200))).is_err());
    }
}
