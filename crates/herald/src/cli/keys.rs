//! `herald keygen`, `herald sign`, `herald verify`: developer tools over
//! the `herald-signature` crate.
//!
//! Exit codes: 0 success (for `verify`: the signature is valid); 1 the
//! signature is invalid (`verify` only); 2 a usage, key or input error —
//! these commands report it themselves so it is never confused with an
//! invalid signature.

pub(super) mod fetch;
pub(super) mod trust;

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use herald_signature::{
    Clock, Ed25519SecretKey, HmacKey, KeyId, PublicKey, Signer, SigningKey, SystemClock, WEBHOOK_ID, WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
};

use self::trust::{Rejection, Trust, TrustArgs, looks_like_jwt};

/// Exit code of `verify` for a signature that does not verify.
const EXIT_INVALID: u8 = 1;
/// Exit code for usage, key and input errors.
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KeyKind {
    /// whsec_ HMAC-SHA256 secret (Standard Webhooks v1).
    Hmac,
    /// whsk_/whpk_ Ed25519 key pair (Standard Webhooks v1a).
    Ed25519,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Kind of key to generate.
    #[arg(long, value_enum, default_value_t = KeyKind::Hmac)]
    kind: KeyKind,
    /// Key id for the JWK of an Ed25519 key [default: its RFC 7638 thumbprint].
    #[arg(long, value_name = "KID")]
    kid: Option<String>,
    /// Print one JSON object instead of labelled lines.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct SignArgs {
    /// Signing key: whsec_… (v1 entry) or whsk_… (v1a entry). Repeat or
    /// separate with commas for one entry per key, in order. Prefer the
    /// environment variable: command lines are visible to other local users.
    #[arg(
        long = "secret",
        value_name = "KEY",
        env = "HERALD_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    secrets: Vec<String>,
    /// The webhook-id (visible ASCII without '.', at most 256 bytes).
    #[arg(long, value_name = "ID")]
    id: String,
    /// The webhook-timestamp, Unix seconds [default: now].
    #[arg(long, value_name = "SECONDS")]
    timestamp: Option<i64>,
    /// The body, exactly as it will be sent (a trailing newline counts); `-` reads stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    body: String,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    trust: TrustArgs,
    /// The webhook-id header.
    #[arg(long, value_name = "ID")]
    id: String,
    /// The webhook-timestamp header, as received (required for v1/v1a).
    #[arg(long, value_name = "SECONDS")]
    timestamp: Option<String>,
    /// The webhook-signature header: v1/v1a entries, or a JWT.
    #[arg(long, value_name = "SIGNATURE")]
    signature: String,
    /// Check as if the time were this Unix second (for captured deliveries) [default: now].
    #[arg(long, value_name = "SECONDS")]
    now: Option<i64>,
    /// The body, exactly as received; `-` reads stdin.
    #[arg(value_name = "FILE", default_value = "-")]
    body: String,
}

pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    Ok(report_usage_errors("keygen", run_keygen(&args)))
}

pub fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    Ok(report_usage_errors("sign", run_sign(&args)))
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let outcome = run_verify(&args).await;
    Ok(match outcome {
        Ok(code) => code,
        Err(error) => report_usage_errors("verify", Err(error)),
    })
}

/// Prints an error of these commands and maps it to exit code 2.
fn report_usage_errors(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald {command}: {error:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    match args.kind {
        KeyKind::Hmac => {
            let key = HmacKey::try_generate()?;
            let secret = key.expose_secret();
            if args.json {
                // Formatted directly (base64 needs no escaping) so that the
                // secret is not copied into a JSON value nobody wipes.
                println!("{{\"kind\":\"hmac\",\"secret\":\"{}\"}}", secret.as_str());
            } else {
                println!(
                    "# HMAC-SHA256 signing secret (Standard Webhooks v1, {} bytes).",
                    key.len()
                );
                println!("# Secret: share it only with the receiver, over a secure channel.");
                println!("secret: {}", secret.as_str());
            }
        }
        KeyKind::Ed25519 => {
            let key = Ed25519SecretKey::try_generate()?;
            let secret = key.expose_secret();
            let public = PublicKey::Ed25519(key.public_key());
            let kid = match &args.kid {
                Some(kid) => KeyId::parse(kid).context("--kid")?,
                None => KeyId::parse(&public.thumbprint())?,
            };
            let jwk = public.to_jwk(&kid);
            if args.json {
                println!(
                    "{{\"kind\":\"ed25519\",\"secret_key\":\"{}\",\"public_key\":\"{}\",\"jwk\":{}}}",
                    secret.as_str(),
                    key.public_key(),
                    jwk
                );
            } else {
                println!("# Ed25519 key pair (Standard Webhooks v1a).");
                println!("# Secret key: keep it on the sender only.");
                println!("secret_key: {}", secret.as_str());
                println!("# Public key: give it to receivers, as whpk_ or as a JWK in a JWKS.");
                println!("public_key: {}", key.public_key());
                println!("jwk: {jwk}");
            }
        }
    }
    Ok(())
}

fn run_sign(args: &SignArgs) -> anyhow::Result<()> {
    let mut keys = Vec::with_capacity(args.secrets.len());
    for (index, text) in args.secrets.iter().enumerate() {
        keys.push(SigningKey::parse(text.trim()).with_context(|| format!("--secret #{}", index + 1))?);
    }
    let signer = Signer::new(keys)?;
    let timestamp = args.timestamp.unwrap_or_else(|| SystemClock.now_unix_seconds());
    let body = read_body(&args.body)?;
    let headers = signer.sign_headers(&args.id, timestamp, &body)?;
    println!("{WEBHOOK_ID}: {}", headers.id);
    println!("{WEBHOOK_TIMESTAMP}: {}", headers.timestamp);
    println!("{WEBHOOK_SIGNATURE}: {}", headers.signature);
    Ok(())
}

/// `Ok(code)` is a verdict (0 valid, 1 invalid); `Err` is a usage error.
async fn run_verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let trust = Trust::load(&args.trust).await?;
    let body = read_body(&args.body)?;
    let mut headers = vec![
        (WEBHOOK_ID, args.id.as_str()),
        (WEBHOOK_SIGNATURE, args.signature.as_str()),
    ];
    match &args.timestamp {
        Some(timestamp) => headers.push((WEBHOOK_TIMESTAMP, timestamp.as_str())),
        None if !looks_like_jwt(&args.signature) => {
            bail!("--timestamp is required for v1/v1a signatures")
        }
        None => {}
    }
    let now = args.now.unwrap_or_else(|| SystemClock.now_unix_seconds());
    match trust.verify(&headers, &body, now) {
        Ok(verified) => {
            println!(
                "valid: {} (webhook-id {})",
                trust.describe_match(&verified),
                verified.id()
            );
            Ok(ExitCode::SUCCESS)
        }
        // A JWT without the options to check it is a usage problem, not a verdict.
        Err(rejection @ (Rejection::JwtWithoutJwks | Rejection::JwtWithoutAudience)) => {
            eprintln!("herald verify: {rejection}");
            Ok(ExitCode::from(EXIT_USAGE))
        }
        Err(rejection) => {
            // The reason may quote attacker-controlled text (a token's members).
            println!("invalid: {}", super::listen::report::printable(&rejection.to_string()));
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The exact bytes of `path`, or of stdin for `-`.
fn read_body(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .context("reading the body from stdin")?;
        Ok(body)
    } else {
        std::fs::read(path).with_context(|| format!("reading the body from {path}"))
    }
}
