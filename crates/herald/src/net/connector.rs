//! A connector for the delivery client that resolves host names itself and
//! dials only addresses the [`AddressPolicy`] allows.
//!
//! This is where SSRF protection actually holds: the address checked is the
//! address connected to, in the same step, so a DNS answer that changes
//! between webhook creation and delivery (rebinding) gains nothing. Literal
//! addresses are checked the same way. Redirects are never followed (the
//! client does not follow them), so a public endpoint cannot bounce Herald
//! to an internal one.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ssrf::{AddressPolicy, BlockReason};

#[derive(Debug, Clone)]
pub struct GuardedConnector {
    policy: Arc<AddressPolicy>,
    connect_timeout: Duration,
}

impl GuardedConnector {
    pub fn new(policy: Arc<AddressPolicy>, connect_timeout: Duration) -> Self {
        Self {
            policy,
            connect_timeout,
        }
    }
}

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the URI has no host")]
    NoHost,
    #[error("cannot resolve {host}: {message}")]
    Dns { host: String, message: String },
    #[error("refused to connect to {address}: {reason} addresses are not allowed (see allow_target_cidrs)")]
    Blocked { address: IpAddr, reason: BlockReason },
    #[error("refused to connect to {host}: {reason} names are not allowed (see allow_target_cidrs)")]
    BlockedName { host: String, reason: BlockReason },
    #[error("cannot connect to {address}: {source}")]
    Tcp {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("connecting to {address} timed out")]
    Timeout { address: SocketAddr },
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let connect_timeout = self.connect_timeout;
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectError::NoHost)?.to_owned();
            let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
            let port = uri.port_u16().unwrap_or(default_port);
            let candidates = resolve(&policy, &host, port).await?;
            connect_first(&policy, &candidates, connect_timeout).await
        })
    }
}

async fn resolve(policy: &AddressPolicy, host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    policy
        .check_host_name(host)
        .map_err(|reason| ConnectError::BlockedName {
            host: host.to_owned(),
            reason,
        })?;
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| ConnectError::Dns {
            host: host.to_owned(),
            message: e.to_string(),
        })?
        .collect();
    if resolved.is_empty() {
        return Err(ConnectError::Dns {
            host: host.to_owned(),
            message: "no addresses".into(),
        });
    }
    Ok(resolved)
}

/// Dials the allowed candidates in order; fails closed if none is allowed.
async fn connect_first(
    policy: &AddressPolicy,
    candidates: &[SocketAddr],
    connect_timeout: Duration,
) -> Result<TokioIo<TcpStream>, ConnectError> {
    let mut last_error = None;
    for &address in candidates {
        if let Err(reason) = policy.check(address.ip()) {
            last_error.get_or_insert(ConnectError::Blocked {
                address: address.ip(),
                reason,
            });
            continue;
        }
        match tokio::time::timeout(connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // Webhook requests are small; do not wait to coalesce them.
                let _ = stream.set_nodelay(true);
                return Ok(TokioIo::new(stream));
            }
            Ok(Err(source)) => last_error = Some(ConnectError::Tcp { address, source }),
            Err(_) => last_error = Some(ConnectError::Timeout { address }),
        }
    }
    Err(last_error.unwrap_or(ConnectError::NoHost))
}
