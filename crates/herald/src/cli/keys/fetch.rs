//! Fetching a small text document (a JWKS) over HTTP or HTTPS for the
//! developer commands.
//!
//! Policy: one GET, redirects are not followed (a 3xx is an error), a 2xx is
//! required, the whole exchange has a deadline, and the body is read up to a
//! size limit. HTTPS verifies the server against the system's root
//! certificates.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::TokioExecutor;

/// Deadline for connecting, sending and reading the whole body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// GETs `url` and returns its body as UTF-8, at most `max_bytes` long.
///
/// # Errors
/// An invalid URL, a connection or TLS failure, the deadline, a non-2xx
/// status, a body over `max_bytes`, or a body that is not UTF-8.
pub async fn get_text(url: &str, max_bytes: usize) -> anyhow::Result<String> {
    let uri: http::Uri = url.parse().context("invalid URL")?;
    let body = if uri.scheme_str() == Some("https") {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .context("loading the system's root certificates")?
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        get(connector, uri, max_bytes).await?
    } else {
        get(HttpConnector::new(), uri, max_bytes).await?
    };
    String::from_utf8(body.to_vec()).context("the response is not UTF-8")
}

async fn get<C>(connector: C, uri: http::Uri, max_bytes: usize) -> anyhow::Result<Bytes>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let client: Client<C, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, concat!("herald/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .context("building the request")?;
    let exchange = async {
        let response = client.request(request).await.context("request failed")?;
        let status = response.status();
        if !status.is_success() {
            bail!("server answered {status} (redirects are not followed)");
        }
        let collected = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|error| anyhow!("reading the body failed (limit {max_bytes} bytes): {error}"))?;
        Ok(collected.to_bytes())
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("no complete answer within {} s", FETCH_TIMEOUT.as_secs()))?
}
