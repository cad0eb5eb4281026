//! The keys `herald verify` and `herald listen` trust, and one verification
//! entry point for both signature formats.
//!
//! Standard Webhooks entries (`v1`, `v1a`) are checked against every
//! `--secret`, `--public-key` and the Ed25519 keys of `--jwks`; a
//! `webhook-signature` that is a compact JWS is checked against `--jwks`
//! for `--audience`. Each trusted key keeps a label naming the flag it came
//! from, so a verdict can say which key matched.

use std::fmt;

use anyhow::{Context, bail};
use herald_signature::{
    HeaderSource, JwkSet, JwtError, JwtVerifier, PublicKey, ReplayError, ReplayGuard, SigningKey, TrustedKey,
    VerifiedJwt, VerifiedWebhook, Verifier, VerifyError, WEBHOOK_SIGNATURE,
};

use super::fetch;

/// Flags naming the keys to trust, shared by `verify` and `listen`.
#[derive(Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("trusted_keys").required(true).multiple(true)))]
pub struct TrustArgs {
    /// A whsec_ secret (v1) or a whsk_ secret key (v1a, its public key is
    /// used). Repeat or separate with commas for several keys. Prefer the
    /// environment variable: command lines are visible to other local users.
    #[arg(
        long = "secret",
        value_name = "KEY",
        env = "HERALD_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ',',
        group = "trusted_keys"
    )]
    secrets: Vec<String>,
    /// A whpk_ Ed25519 public key (raw or SPKI form). Repeatable.
    #[arg(
        long = "public-key",
        value_name = "whpk_KEY",
        value_delimiter = ',',
        group = "trusted_keys"
    )]
    public_keys: Vec<String>,
    /// A JWKS file, or an http(s) URL to fetch it from: its Ed25519 keys
    /// verify v1a entries, all its keys verify JWT signatures.
    #[arg(long, value_name = "FILE_OR_URL", group = "trusted_keys")]
    jwks: Option<String>,
    /// For JWT signatures: the expected `aud`, the URL the sender delivers to.
    #[arg(long, value_name = "URL")]
    audience: Option<String>,
    /// For JWT signatures: the expected `iss` (not checked when absent).
    #[arg(long, value_name = "ISSUER")]
    issuer: Option<String>,
    /// Accepted difference between webhook-timestamp and now, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = herald_signature::DEFAULT_TOLERANCE_SECONDS)]
    tolerance: u64,
}

/// The loaded keys. Every field is fixed at start-up.
pub struct Trust {
    /// Standard Webhooks keys, in the order of `labels`.
    verifier: Verifier,
    /// "--secret #1", "--public-key #2", "JWKS kid herald-ed-1"… one per key of `verifier`.
    labels: Vec<String>,
    /// Present when `--jwks` was given: checks JWT signatures.
    jwks: Option<JwkSet>,
    /// The JWT verifier, when both `--jwks` and `--audience` were given.
    jwt: Option<JwtVerifier>,
}

/// A message that passed verification.
pub enum Verified {
    Standard(VerifiedWebhook),
    Jwt(VerifiedJwt),
}

/// Why a message was refused.
#[derive(Debug)]
pub enum Rejection {
    Standard(VerifyError),
    Jwt(JwtError),
    /// A JWT arrived but no `--jwks` was given.
    JwtWithoutJwks,
    /// A JWT arrived but no `--audience` was given.
    JwtWithoutAudience,
}

impl Rejection {
    /// `true` when the request is malformed (HTTP 400) rather than
    /// unauthenticated (HTTP 401).
    pub fn is_malformed(&self) -> bool {
        match self {
            Self::Standard(error) => matches!(
                error,
                VerifyError::MissingHeader { .. }
                    | VerifyError::InvalidHeader { .. }
                    | VerifyError::InvalidId(_)
                    | VerifyError::InvalidTimestamp { .. }
            ),
            Self::Jwt(error) => matches!(error, JwtError::Malformed(_) | JwtError::MissingHeader { .. }),
            Self::JwtWithoutJwks | Self::JwtWithoutAudience => false,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Standard(error) => write!(f, "{error}"),
            Self::Jwt(error) => write!(f, "{error}"),
            Self::JwtWithoutJwks => f.write_str("the signature is a JWT, which needs --jwks"),
            Self::JwtWithoutAudience => f.write_str("the signature is a JWT, which needs --audience"),
        }
    }
}

impl Trust {
    /// Parses every key (fetching `--jwks` if it is a URL).
    ///
    /// # Errors
    /// The first key that does not parse, named by its flag and position,
    /// or a JWKS that cannot be read, fetched or parsed.
    pub async fn load(args: &TrustArgs) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        let mut labels = Vec::new();
        for (index, text) in args.secrets.iter().enumerate() {
            let label = format!("--secret #{}", index + 1);
            let key = SigningKey::parse(text.trim()).with_context(|| label.clone())?;
            keys.push(key.trusted_key());
            labels.push(label);
        }
        for (index, text) in args.public_keys.iter().enumerate() {
            let label = format!("--public-key #{}", index + 1);
            let key = herald_signature::Ed25519PublicKey::parse(text.trim()).with_context(|| label.clone())?;
            keys.push(TrustedKey::Ed25519(key));
            labels.push(label);
        }
        let jwks = match &args.jwks {
            Some(source) => Some(load_jwks(source).await?),
            None => None,
        };
        for (kid, key) in jwks.iter().flat_map(JwkSet::keys) {
            if let PublicKey::Ed25519(key) = key {
                keys.push(TrustedKey::Ed25519(*key));
                labels.push(format!("JWKS kid {kid}"));
            }
        }
        let jwt = match (&jwks, &args.audience) {
            (Some(jwks), Some(audience)) => {
                let verifier = JwtVerifier::new(jwks.clone(), audience);
                Some(match &args.issuer {
                    Some(issuer) => verifier.with_issuer(issuer),
                    None => verifier,
                })
            }
            _ => None,
        };
        let verifier = Verifier::new(keys).with_tolerance_seconds(args.tolerance);
        Ok(Self {
            verifier,
            labels,
            jwks,
            jwt,
        })
    }

    /// One line per trusted key, for start-up output.
    pub fn describe_keys(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .verifier
            .keys()
            .iter()
            .zip(&self.labels)
            .map(|(key, label)| match key {
                TrustedKey::Hmac(_) => format!("{label}: HMAC secret (v1)"),
                TrustedKey::Ed25519(key) => format!("{label}: Ed25519 {key} (v1a)"),
            })
            .collect();
        if let Some(jwks) = &self.jwks {
            let kids: Vec<String> = jwks
                .keys()
                .iter()
                .map(|(kid, key)| format!("{kid} ({})", key.jwt_algorithm()))
                .collect();
            let audience = if self.jwt.is_some() {
                ""
            } else {
                "; JWTs need --audience"
            };
            lines.push(format!("JWKS for JWT signatures: {}{audience}", kids.join(", ")));
        }
        lines
    }

    /// Verifies `headers` and `body` as of `now`, choosing the format from
    /// the shape of `webhook-signature`.
    pub fn verify<H: HeaderSource + ?Sized>(&self, headers: &H, body: &[u8], now: i64) -> Result<Verified, Rejection> {
        let is_jwt = headers
            .header(WEBHOOK_SIGNATURE)
            .and_then(|value| std::str::from_utf8(value).ok())
            .is_some_and(looks_like_jwt);
        if !is_jwt {
            return self
                .verifier
                .verify_at(headers, body, now)
                .map(Verified::Standard)
                .map_err(Rejection::Standard);
        }
        let Some(jwt) = &self.jwt else {
            return Err(if self.jwks.is_none() {
                Rejection::JwtWithoutJwks
            } else {
                Rejection::JwtWithoutAudience
            });
        };
        jwt.verify_headers_at(headers, body, now)
            .map(Verified::Jwt)
            .map_err(Rejection::Jwt)
    }

    /// What matched, e.g. "v1 entry 1 matched --secret #2".
    pub fn describe_match(&self, verified: &Verified) -> String {
        match verified {
            Verified::Standard(webhook) => {
                let matched = webhook.matched();
                let label = self
                    .labels
                    .get(matched.key_index)
                    .map_or("a trusted key", String::as_str);
                format!("{} entry {} matched {label}", matched.scheme, matched.entry_index + 1)
            }
            Verified::Jwt(jwt) => format!(
                "JWT ({}) verified with JWKS kid {}",
                jwt.algorithm().as_str(),
                jwt.kid()
            ),
        }
    }
}

impl Verified {
    /// The message id (`webhook-id`, or the JWT's `jti`).
    pub fn id(&self) -> &str {
        match self {
            Self::Standard(webhook) => webhook.id(),
            Self::Jwt(jwt) => &jwt.claims().jti,
        }
    }

    /// Records the id in `guard`; only verified messages can be recorded.
    pub fn record(&self, guard: &dyn ReplayGuard) -> Result<(), ReplayError> {
        match self {
            Self::Standard(webhook) => webhook.record(guard),
            Self::Jwt(jwt) => jwt.record(guard),
        }
    }
}

/// A compact JWS has exactly two dots and no `,` or space; Standard
/// Webhooks entries always contain a `,`.
pub fn looks_like_jwt(signature: &str) -> bool {
    signature.bytes().filter(|&byte| byte == b'.').count() == 2 && !signature.contains([',', ' '])
}

async fn load_jwks(source: &str) -> anyhow::Result<JwkSet> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        fetch::get_text(source, herald_signature::jwks::MAX_JWKS_BYTES)
            .await
            .with_context(|| format!("fetching --jwks {source}"))?
    } else {
        let bytes = std::fs::read(source).with_context(|| format!("reading --jwks {source}"))?;
        if bytes.len() > herald_signature::jwks::MAX_JWKS_BYTES {
            bail!("--jwks {source} is larger than 1 MiB");
        }
        String::from_utf8(bytes).with_context(|| format!("--jwks {source} is not UTF-8"))?
    };
    JwkSet::from_json(&text).with_context(|| format!("--jwks {source}"))
}

#[cfg(test)]
mod tests {
    use super::looks_like_jwt;

    #[test]
    fn jwt_shape_is_recognised() {
        assert!(looks_like_jwt("eyJh.eyJp.c2ln"));
        assert!(!looks_like_jwt("v1,abc="));
        assert!(!looks_like_jwt("v1,a.b.c"));
        assert!(!looks_like_jwt("a.b"));
    }
}
