//! `herald signing-keys list|rotate`: Herald's own signing keys (per-job
//! webhooks, `/.well-known/jwks.json`), through a running server's admin
//! API, so that it works the same on SQLite (whose data directory the
//! server holds) and on PostgreSQL. The admin key comes from
//! `HERALD_ADMIN_KEY`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Args)]
pub struct SigningKeysArgs {
    #[command(subcommand)]
    command: SigningKeysCommand,
    /// The server's base URL (plain HTTP, e.g. behind a local port).
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
}

#[derive(Subcommand)]
enum SigningKeysCommand {
    /// Print the keys in force (current and in their overlap), as JSON.
    List,
    /// Make new keys current; the previous ones stay published (and sign
    /// `v1a` beside the new ones) for the overlap, then retire.
    Rotate {
        /// How long the previous keys stay published, e.g. `24h` or `0s`.
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
}

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub async fn signing_keys(args: SigningKeysArgs) -> anyhow::Result<ExitCode> {
    let key = std::env::var("HERALD_ADMIN_KEY").context("set HERALD_ADMIN_KEY to the server's admin key")?;
    let base = args.url.trim_end_matches('/');
    let (method, path, body) = match &args.command {
        SigningKeysCommand::List => (http::Method::GET, "/v1/signing_keys", String::new()),
        SigningKeysCommand::Rotate { overlap } => (
            http::Method::POST,
            "/v1/signing_keys:rotate",
            serde_json::json!({ "overlap": overlap }).to_string(),
        ),
    };
    let answer = call(method, &format!("{base}{path}"), &key, body).await?;
    println!("{answer}");
    Ok(ExitCode::SUCCESS)
}

async fn call(method: http::Method, url: &str, key: &str, body: String) -> anyhow::Result<String> {
    let uri: http::Uri = url.parse().context("invalid --url")?;
    if uri.scheme_str() != Some("http") {
        bail!("--url must be http:// (run it where the server's port is reachable)");
    }
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {key}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let exchange = async {
        let response = client.request(request).await.context("request failed")?;
        let status = response.status();
        let collected = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|error| anyhow!("reading the answer failed: {error}"))?;
        let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
        if !status.is_success() {
            bail!("the server answered {status}: {text}");
        }
        Ok(text)
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("no answer within {} s", TIMEOUT.as_secs()))?
}
