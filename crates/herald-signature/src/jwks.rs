//! JSON Web Key Sets: exporting Herald's public keys and reading a trusted
//! set back.
//!
//! Export: Ed25519 keys as RFC 8037 OKP JWKs
//! (`{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}`)
//! and RSA keys as RFC 7518 RSA JWKs (`{"kty":"RSA","n":…,"e":…,"kid":…,
//! "alg":"RS256","use":"sig"}`), all values base64url without padding.
//!
//! Import policy ([`JwkSet::from_json`]):
//! - the whole set is refused for: input over [`MAX_JWKS_BYTES`] or over
//!   [`MAX_JWKS_KEYS`] keys; invalid JSON or no `keys` array; a key that is
//!   not an object or has no string `kty`; **any private member** (`d`, `p`,
//!   `q`, `dp`, `dq`, `qi`, `oth`, `k`); two keys with the same `kid`; a
//!   supported key (OKP/Ed25519 or RSA) that is broken — missing or invalid
//!   `kid`, non-canonical base64url, `x` not 32 bytes or a weak point, `n`
//!   with a leading zero byte or outside 2048–8192 bits; no usable key left;
//! - a key is skipped (ignored, as RFC 7517 asks for unknown keys) when its
//!   `kty` is not `OKP` or `RSA`, its `crv` is not `Ed25519`, its `use` is
//!   present and not `sig`, or its `alg` is present and not the one Herald
//!   uses with that key type (`EdDSA` / `RS256`): a key published for
//!   another algorithm is never used for these.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::encoding;
use crate::error::JwksError;
use crate::keys::{Ed25519PublicKey, KeyId, PublicKey, RsaPublicKey, TrustedKey};

/// Largest JWKS document accepted, in bytes.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys accepted in one JWKS document.
pub const MAX_JWKS_KEYS: usize = 256;

/// Members that only private (or symmetric) JWKs have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A set of public keys, each with a unique `kid`. Invariant: no two keys
/// share a `kid`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<(KeyId, PublicKey)>,
}

impl JwkSet {
    /// A set of `(kid, key)` pairs, in publication order.
    ///
    /// # Errors
    /// [`JwksError::DuplicateKid`] if two keys share a `kid`.
    pub fn new(keys: Vec<(KeyId, PublicKey)>) -> Result<Self, JwksError> {
        let mut seen = BTreeSet::new();
        for (kid, _) in &keys {
            if !seen.insert(kid.as_str()) {
                return Err(JwksError::DuplicateKid(kid.to_string()));
            }
        }
        Ok(Self { keys })
    }

    /// The key with this `kid`.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|(id, _)| id.as_str() == kid).map(|(_, key)| key)
    }

    /// All `(kid, key)` pairs, in publication order.
    #[must_use]
    pub fn keys(&self) -> &[(KeyId, PublicKey)] {
        &self.keys
    }

    /// Whether the set holds no key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The Ed25519 keys as [`TrustedKey`]s, to verify `v1a` entries with a
    /// [`Verifier`](crate::Verifier). RSA keys are only used for JWTs.
    #[must_use]
    pub fn trusted_keys(&self) -> Vec<TrustedKey> {
        self.keys
            .iter()
            .filter_map(|(_, key)| match key {
                PublicKey::Ed25519(key) => Some(TrustedKey::Ed25519(*key)),
                PublicKey::Rsa(_) => None,
            })
            .collect()
    }

    /// The set as a JWKS JSON document, `{"keys":[…]}`, members of each
    /// key in the order `kty`, `crv`/`n`, `x`/`e`, `kid`, `alg`, `use`.
    #[must_use]
    pub fn to_json(&self) -> String {
        let document = JwksDocument {
            keys: self.keys.iter().map(|(kid, key)| Jwk::new(kid, key)).collect(),
        };
        // Serialising strings and a Vec cannot fail.
        serde_json::to_string(&document).unwrap_or_default()
    }

    /// Reads a JWKS document strictly; see the module documentation for
    /// what refuses the whole set and what skips one key.
    ///
    /// # Errors
    /// A [`JwksError`] naming the problem and the `kid` concerned.
    pub fn from_json(text: &str) -> Result<Self, JwksError> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge("more than 1 MiB"));
        }
        let document: Value = serde_json::from_str(text).map_err(|error| JwksError::Malformed(error.to_string()))?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::Malformed("no \"keys\" array".to_owned()));
        };
        if entries.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooLarge("more than 256 keys"));
        }
        let mut all_kids = BTreeSet::new();
        let mut keys = Vec::new();
        for entry in entries {
            let Some(jwk) = entry.as_object() else {
                return Err(JwksError::Malformed("a key is not a JSON object".to_owned()));
            };
            if let Some(kid) = jwk.get("kid").and_then(Value::as_str)
                && !all_kids.insert(kid)
            {
                return Err(JwksError::DuplicateKid(kid.to_owned()));
            }
            if let Some(key) = parse_jwk(jwk)? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(Self { keys })
    }
}

impl PublicKey {
    /// This key as a JWK with `kid`, `alg` and `"use":"sig"`.
    #[must_use]
    pub fn to_jwk(&self, kid: &KeyId) -> Value {
        // Serialising strings cannot fail.
        serde_json::to_value(Jwk::new(kid, self)).unwrap_or(Value::Null)
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url without padding): a
    /// stable, collision-resistant default for a `kid`.
    #[must_use]
    pub fn thumbprint(&self) -> String {
        use sha2::Digest as _;
        // The required members in lexicographic order, no whitespace; the
        // values are base64url, which needs no JSON escaping.
        let canonical = match self {
            Self::Ed25519(key) => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    encoding::encode_url(key.as_bytes())
                )
            }
            Self::Rsa(key) => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                encoding::encode_url(&key.exponent()),
                encoding::encode_url(&key.modulus())
            ),
        };
        encoding::encode_url(&sha2::Sha256::digest(canonical.as_bytes()))
    }
}

#[derive(Serialize)]
struct JwksDocument<'a> {
    keys: Vec<Jwk<'a>>,
}

/// Serialised form of one key, members in the conventional order.
#[derive(Serialize)]
#[serde(untagged)]
enum Jwk<'a> {
    Okp {
        kty: &'static str,
        crv: &'static str,
        x: String,
        kid: &'a str,
        alg: &'static str,
        #[serde(rename = "use")]
        key_use: &'static str,
    },
    Rsa {
        kty: &'static str,
        n: String,
        e: String,
        kid: &'a str,
        alg: &'static str,
        #[serde(rename = "use")]
        key_use: &'static str,
    },
}

impl<'a> Jwk<'a> {
    fn new(kid: &'a KeyId, key: &PublicKey) -> Self {
        match key {
            PublicKey::Ed25519(key) => Jwk::Okp {
                kty: "OKP",
                crv: "Ed25519",
                x: encoding::encode_url(key.as_bytes()),
                kid: kid.as_str(),
                alg: "EdDSA",
                key_use: "sig",
            },
            PublicKey::Rsa(key) => Jwk::Rsa {
                kty: "RSA",
                n: encoding::encode_url(&key.modulus()),
                e: encoding::encode_url(&key.exponent()),
                kid: kid.as_str(),
                alg: "RS256",
                key_use: "sig",
            },
        }
    }
}

/// One JWK: `Ok(None)` to skip it, `Err` to refuse the whole set.
fn parse_jwk(jwk: &Map<String, Value>) -> Result<Option<(KeyId, PublicKey)>, JwksError> {
    let kid_text = jwk.get("kid").and_then(Value::as_str);
    let invalid = |problem: &str| JwksError::InvalidKey {
        kid: kid_text.map(str::to_owned),
        problem: problem.to_owned(),
    };
    if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|member| jwk.contains_key(*member)) {
        return Err(JwksError::PrivateKeyMaterial {
            kid: kid_text.map(str::to_owned),
            member,
        });
    }
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no string kty"))?;
    let expected_alg = match (kty, optional_str(jwk, "crv").map_err(&invalid)?) {
        ("OKP", Some("Ed25519")) => "EdDSA",
        ("RSA", _) => "RS256",
        _ => return Ok(None),
    };
    if optional_str(jwk, "use")
        .map_err(&invalid)?
        .is_some_and(|key_use| key_use != "sig")
    {
        return Ok(None);
    }
    if optional_str(jwk, "alg")
        .map_err(&invalid)?
        .is_some_and(|alg| alg != expected_alg)
    {
        return Ok(None);
    }
    let kid_text = kid_text.ok_or_else(|| invalid("no string kid"))?;
    let kid = KeyId::parse(kid_text).map_err(|error| invalid(&error.to_string()))?;
    let key = if kty == "OKP" {
        let x = member_bytes(jwk, "x").map_err(|p| invalid(&p))?;
        let x: [u8; 32] = x.as_slice().try_into().map_err(|_| invalid("x is not 32 bytes"))?;
        PublicKey::Ed25519(Ed25519PublicKey::from_bytes(&x).map_err(|error| invalid(&error.to_string()))?)
    } else {
        let n = member_bytes(jwk, "n").map_err(|p| invalid(&p))?;
        let e = member_bytes(jwk, "e").map_err(|p| invalid(&p))?;
        if n.first() == Some(&0) || e.first() == Some(&0) {
            return Err(invalid("n or e has a leading zero byte"));
        }
        PublicKey::Rsa(RsaPublicKey::from_components(&n, &e).map_err(|error| invalid(&error.to_string()))?)
    };
    Ok(Some((kid, key)))
}

fn optional_str<'a>(jwk: &'a Map<String, Value>, member: &str) -> Result<Option<&'a str>, &'static str> {
    match jwk.get(member) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err("crv, use and alg must be strings"),
    }
}

fn member_bytes(jwk: &Map<String, Value>, member: &str) -> Result<Vec<u8>, String> {
    let text = jwk
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no string {member}"))?;
    let bytes = encoding::decode_url(text)
        .map_err(|problem| format!("{member} is not base64url without padding: {problem}"))?;
    if bytes.is_empty() {
        return Err(format!("{member} is empty"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "wuzPrKxPfWpJSsXgyg_MEoMGvjs5SjDO4ad6X4ZYqqg";

    fn okp(extra: &str) -> String {
        format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k1"{extra}}}]}}"#)
    }

    fn check(document: &str, expected: Result<usize, JwksError>) {
        assert_eq!(
            JwkSet::from_json(document).map(|set| set.keys().len()),
            expected,
            "{document}"
        );
    }

    #[test]
    fn import_policy() {
        check(&okp(""), Ok(1));
        check(&okp(r#","alg":"EdDSA","use":"sig""#), Ok(1));
        check(
            &okp(r#","d":"AAAA""#),
            Err(JwksError::PrivateKeyMaterial {
                kid: Some("k1".into()),
                member: "d",
            }),
        );
        check(&okp(r#","use":"enc""#), Err(JwksError::NoUsableKeys));
        check(&okp(r#","alg":"RS256""#), Err(JwksError::NoUsableKeys));
        check(
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"e"}]}"#,
            Err(JwksError::NoUsableKeys),
        );
        check(
            r#"{"keys":[{"kty":"OKP","crv":"X25519","x":"AA","kid":"e"}]}"#,
            Err(JwksError::NoUsableKeys),
        );
        check(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"short"}]}"#,
            Err(JwksError::InvalidKey {
                kid: Some("short".into()),
                problem: "x is not 32 bytes".into(),
            }),
        );
        check(
            &format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}="}}]}}"#),
            Err(JwksError::InvalidKey {
                kid: None,
                problem: "no string kid".into(),
            }),
        );
        let duplicate = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k"}},{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k"}}]}}"#
        );
        check(&duplicate, Err(JwksError::DuplicateKid("k".into())));
        check("[]", Err(JwksError::Malformed("no \"keys\" array".into())));
        assert!(matches!(JwkSet::from_json("{"), Err(JwksError::Malformed(_))));
    }

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        let Ok(x) = encoding::decode_url("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo") else {
            panic!("x decodes")
        };
        let Ok(x) = <[u8; 32]>::try_from(x.as_slice()) else {
            panic!("32 bytes")
        };
        let Ok(key) = Ed25519PublicKey::from_bytes(&x) else {
            panic!("valid key")
        };
        assert_eq!(
            PublicKey::Ed25519(key).thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn export_then_import_round_trips() {
        let Ok(key) = Ed25519PublicKey::parse("whpk_wuzPrKxPfWpJSsXgyg/MEoMGvjs5SjDO4ad6X4ZYqqg=") else {
            panic!("vector key parses")
        };
        let Ok(kid) = KeyId::parse("k1") else { panic!("kid") };
        let set = JwkSet::new(vec![(kid, PublicKey::Ed25519(key))]).unwrap_or_default();
        let json = set.to_json();
        assert_eq!(
            json,
            format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{X}","kid":"k1","alg":"EdDSA","use":"sig"}}]}}"#)
        );
        assert_eq!(JwkSet::from_json(&json), Ok(set));
    }
}
