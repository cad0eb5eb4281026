//! The one pooled HTTP client every attempt goes through.
//!
//! hyper with rustls (HTTP/1.1, and HTTP/2 where the endpoint's TLS offers
//! it), keep-alive connections reused across attempts, and the SSRF-guarded
//! connector underneath. Redirects are never followed: a 3xx is just a
//! non-2xx status, a failure.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::domain::webhook::EndpointUri;
use crate::domain::{AttemptErrorKind, Timestamp};
use crate::net::connector::{ConnectError, GuardedConnector};
use crate::net::ssrf::AddressPolicy;

/// Response bytes read at most to let a connection be reused; a longer body
/// is abandoned and its connection closed.
const DRAIN_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Whole-exchange limit: connect, send, and read the response.
    pub timeout: Duration,
    /// Response body bytes kept in the delivery log.
    pub excerpt_bytes: usize,
    /// Idle keep-alive connections kept per endpoint host.
    pub max_idle_per_host: usize,
    /// Extra PEM certificates trusted for HTTPS, beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
}

/// One signed webhook request.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub uri: &'a EndpointUri,
    pub webhook_id: &'a str,
    pub webhook_timestamp: i64,
    pub webhook_signature: &'a str,
    pub body: Bytes,
}

/// A `Retry-After` header: a delay, or an instant (an HTTP date), which the
/// caller turns into a delay with its injected clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Delay(Duration),
    At(Timestamp),
}

impl RetryAfter {
    /// The delay it asks for, seen from `now` (a date in the past: none).
    pub fn delay_from(self, now: Timestamp) -> Duration {
        match self {
            Self::Delay(delay) => delay,
            Self::At(at) => at.duration_since(now),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Status {
        code: u16,
        retry_after: Option<RetryAfter>,
        excerpt: String,
    },
    Failed {
        kind: AttemptErrorKind,
        message: String,
    },
}

#[derive(Clone)]
pub struct DeliveryClient {
    client: Client<HttpsConnector<GuardedConnector>, Full<Bytes>>,
    config: Arc<ClientConfig>,
    user_agent: HeaderValue,
}

impl DeliveryClient {
    pub fn new(policy: Arc<AddressPolicy>, config: ClientConfig) -> Result<Self, TlsSetupError> {
        let connect_timeout = config.timeout.min(Duration::from_secs(10));
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(trust_roots(config.ca_file.as_deref())?)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(GuardedConnector::new(policy, connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.max_idle_per_host)
            .build(https);
        let user_agent = HeaderValue::from_static(concat!("herald/", env!("CARGO_PKG_VERSION")));
        Ok(Self {
            client,
            config: Arc::new(config),
            user_agent,
        })
    }

    /// Sends one request; every failure is an outcome, never an error.
    /// The duration is measured on tokio's monotonic clock (paused in
    /// tests), never the wall clock.
    pub async fn send(&self, request: SignedRequest<'_>) -> (Response, Duration) {
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.timeout;
        let response = self.exchange(request, deadline).await;
        (response, started.elapsed())
    }

    /// Sends, waits for the status line until `deadline`, then reads what
    /// of the body arrives before it. Once a status has arrived the attempt
    /// is judged by it: a 2xx whose body trickles in is still a success.
    async fn exchange(&self, request: SignedRequest<'_>, deadline: tokio::time::Instant) -> Response {
        let built = Request::post(request.uri.as_str())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, self.user_agent.clone())
            .header("webhook-id", request.webhook_id)
            .header("webhook-timestamp", request.webhook_timestamp)
            .header("webhook-signature", request.webhook_signature)
            .body(Full::new(request.body));
        let built = match built {
            Ok(built) => built,
            Err(error) => {
                let message = format!("cannot build the request: {error}");
                return Response::Failed {
                    kind: AttemptErrorKind::Protocol,
                    message,
                };
            }
        };
        let response = match tokio::time::timeout_at(deadline, self.client.request(built)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return classify(&error),
            Err(_) => {
                let message = format!("no response within {:?}", self.config.timeout);
                return Response::Failed {
                    kind: AttemptErrorKind::Timeout,
                    message,
                };
            }
        };
        let code = response.status().as_u16();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(parse_retry_after);
        let excerpt = read_excerpt(response.into_body(), self.config.excerpt_bytes, deadline).await;
        Response::Status {
            code,
            retry_after,
            excerpt,
        }
    }
}

/// Reads up to `DRAIN_LIMIT` bytes until `deadline`, keeping the first
/// `limit` as text. A body that breaks off or stalls is not an error: the
/// status already arrived. (An unfinished body closes its connection.)
async fn read_excerpt(mut body: hyper::body::Incoming, limit: usize, deadline: tokio::time::Instant) -> String {
    let mut kept = Vec::with_capacity(limit.min(1024));
    let mut total = 0usize;
    while total <= DRAIN_LIMIT {
        let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await else {
            break;
        };
        if let Some(data) = frame.data_ref() {
            total += data.len();
            let room = limit.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("no trusted root certificates: the system has none and no ca_file is configured")]
    NoRoots,
}

/// The system's root certificates plus those in `ca_file`. System roots
/// that fail to load are skipped (logged); a `ca_file` that fails is an error.
pub(crate) fn trust_roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, TlsSetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "skipping a system root certificate");
    }
    let (_, skipped) = roots.add_parsable_certificates(native.certs);
    if skipped > 0 {
        tracing::warn!(skipped, "skipped unparsable system root certificates");
    }
    if let Some(path) = ca_file {
        let fail = |message: String| TlsSetupError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            roots
                .add(cert.map_err(|e| fail(e.to_string()))?)
                .map_err(|e| fail(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(fail("it holds no PEM certificate".into()));
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    Ok(roots)
}

/// `Retry-After` as delta-seconds or an HTTP date; unparseable is ignored.
pub(crate) fn parse_retry_after(value: &HeaderValue) -> Option<RetryAfter> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(RetryAfter::Delay(Duration::from_secs(seconds)));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    let millis = when.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(RetryAfter::At(Timestamp::from_millis(i64::try_from(millis).ok()?)))
}

fn classify(error: &hyper_util::client::legacy::Error) -> Response {
    let message = chain_message(error);
    let mut kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if kind.is_none() {
            kind = kind_of(cause);
        }
        source = cause.source();
    }
    let kind = kind.unwrap_or(if error.is_connect() {
        AttemptErrorKind::Connect
    } else {
        AttemptErrorKind::Protocol
    });
    Response::Failed { kind, message }
}

/// An error and its causes, each said once: many errors (`ConnectError`,
/// `io::Error`) already print their cause in their own message.
fn chain_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn kind_of(cause: &(dyn std::error::Error + 'static)) -> Option<AttemptErrorKind> {
    if let Some(connect) = cause.downcast_ref::<ConnectError>() {
        return Some(match connect {
            ConnectError::Dns { .. } => AttemptErrorKind::Dns,
            ConnectError::Blocked { .. } | ConnectError::BlockedName { .. } => AttemptErrorKind::SsrfBlocked,
            ConnectError::NoHost | ConnectError::Tcp { .. } | ConnectError::Timeout { .. } => AttemptErrorKind::Connect,
        });
    }
    if cause.downcast_ref::<rustls::Error>().is_some() {
        return Some(AttemptErrorKind::Tls);
    }
    // `io::Error::source()` skips the error an io::Error wraps, and TLS
    // failures arrive as io::Error(io::Error(rustls::Error)): look inside.
    if let Some(io) = cause.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return kind_of(inner);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Outer(#[source] ConnectError);

    #[test]
    fn connect_errors_say_their_cause_once() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let error = Outer(ConnectError::Tcp {
            address: "127.0.0.1:9".parse().unwrap(),
            source: refused,
        });
        let message = chain_message(&error);
        assert_eq!(
            message,
            "client error (Connect): cannot connect to 127.0.0.1:9: Connection refused (os error 111)"
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("120")),
            Some(RetryAfter::Delay(Duration::from_secs(120)))
        );
        let date = parse_retry_after(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")).unwrap();
        assert_eq!(date, RetryAfter::At(Timestamp::from_millis(1_445_412_480_000)));
        assert_eq!(
            date.delay_from(Timestamp::from_millis(1_445_412_470_000)),
            Duration::from_secs(10)
        );
        assert_eq!(
            date.delay_from(Timestamp::from_millis(1_445_412_490_000)),
            Duration::ZERO
        );
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
        assert_eq!(parse_retry_after(&HeaderValue::from_static("-5")), None);
    }
}
