//! Body-bound JWTs: round trips with EdDSA and RS256 through an exported
//! JWKS, and one refusal per check, including hand-forged tokens signed by
//! a trusted key (so only the check under test can refuse them).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use herald_signature::jwt::body_sha256;
use herald_signature::{
    Ed25519SecretKey, FixedClock, JwkSet, JwtAlgorithm, JwtError, JwtMessage, JwtSigner, JwtSigningKey, JwtVerifier,
    KeyId, RsaPrivateKey, WEBHOOK_ID, WEBHOOK_SIGNATURE,
};
use serde_json::{Value, json};

const SEED: [u8; 32] = [42; 32];
const RSA_PEM: &str = include_str!("keys/rsa-2048-test-only.pem");
const AUDIENCE: &str = "https://receiver.example/hooks";
const ISSUER: &str = "https://herald.example";
const NOW: i64 = 1_769_083_200;
const BODY: &[u8] = br#"{"type":"batch.succeeded","data":{"id":"batch_123"}}"#;

fn kid(text: &str) -> KeyId {
    KeyId::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn ed25519_signer() -> JwtSigner {
    let key = JwtSigningKey::Ed25519(Ed25519SecretKey::from_seed(&SEED));
    JwtSigner::new(kid("ed-1"), key, ISSUER).unwrap_or_else(|e| panic!("{e}"))
}

fn rsa_signer() -> JwtSigner {
    let key = RsaPrivateKey::from_pkcs8_pem(RSA_PEM).unwrap_or_else(|e| panic!("{e}"));
    JwtSigner::new(kid("rsa-1"), JwtSigningKey::Rsa(key), ISSUER).unwrap_or_else(|e| panic!("{e}"))
}

/// The JWKS a Herald server would publish for both signers, read back the
/// way a receiver would.
fn verifier() -> JwtVerifier {
    let published = JwkSet::new(vec![
        (ed25519_signer().kid().clone(), ed25519_signer().public_key()),
        (rsa_signer().kid().clone(), rsa_signer().public_key()),
    ])
    .unwrap_or_else(|e| panic!("{e}"))
    .to_json();
    let trusted = JwkSet::from_json(&published).unwrap_or_else(|e| panic!("{e}"));
    JwtVerifier::new(trusted, AUDIENCE)
        .with_issuer(ISSUER)
        .with_clock(FixedClock(NOW))
}

fn message(msg_id: &str) -> JwtMessage<'_> {
    JwtMessage {
        audience: AUDIENCE,
        msg_id,
        issued_at: NOW,
        body: BODY,
    }
}

/// A token with arbitrary header and claims, signed by the trusted Ed25519 key.
fn forge(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

fn header() -> Value {
    json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed-1"})
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "iat": NOW, "exp": NOW + 300, "jti": "msg_1", "body_sha256": body_sha256(BODY)})
}

/// The good claims with one member replaced (or removed, for `null`).
fn claims_with(member: &str, value: Value) -> Value {
    let mut claims = claims();
    if let Some(object) = claims.as_object_mut() {
        if value.is_null() {
            object.remove(member);
        } else {
            object.insert(member.to_owned(), value);
        }
    }
    claims
}

#[test]
fn both_algorithms_round_trip_through_the_published_jwks() {
    let verifier = verifier();
    for (signer, algorithm) in [
        (ed25519_signer(), JwtAlgorithm::EdDsa),
        (rsa_signer(), JwtAlgorithm::Rs256),
    ] {
        let token = signer.sign(&message("msg_1")).unwrap_or_else(|e| panic!("{e}"));
        let verified = verifier
            .verify(&token, BODY, Some("msg_1"))
            .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
        assert_eq!(verified.algorithm(), algorithm);
        assert_eq!(verified.kid(), signer.kid().as_str());
        let claims = verified.claims();
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str(), claims.jti.as_str()),
            (ISSUER, AUDIENCE, "msg_1")
        );
        assert_eq!((claims.iat, claims.exp), (NOW, NOW + 300));
        let headers = [(WEBHOOK_ID, "msg_1"), (WEBHOOK_SIGNATURE, token.as_str())];
        assert!(verifier.verify_headers(&headers, BODY).is_ok());
    }
}

#[test]
fn signed_header_and_claims_are_exactly_the_documented_ones() {
    let token = ed25519_signer()
        .sign(&message("msg_1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let segments: Vec<&str> = token.split('.').collect();
    let decode = |segment: &str| URL_SAFE_NO_PAD.decode(segment).map(String::from_utf8);
    assert_eq!(
        decode(segments[0]).ok().and_then(Result::ok).as_deref(),
        Some(r#"{"alg":"EdDSA","typ":"JWT","kid":"ed-1"}"#)
    );
    let expected_claims = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{NOW},"exp":{},"jti":"msg_1","body_sha256":"{}"}}"#,
        NOW + 300,
        body_sha256(BODY)
    );
    assert_eq!(decode(segments[1]).ok().and_then(Result::ok), Some(expected_claims));
    // The signature is plain Ed25519 over `header.claims`, as computed
    // independently with ed25519-dalek.
    let input = format!("{}.{}", segments[0], segments[1]);
    let independent = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(input.as_bytes());
    assert_eq!(segments[2], URL_SAFE_NO_PAD.encode(independent.to_bytes()));
}

#[test]
fn ttl_is_configurable_and_bounded() {
    let signer = ed25519_signer().with_ttl_seconds(60).unwrap_or_else(|e| panic!("{e}"));
    let token = signer.sign(&message("msg_1")).unwrap_or_else(|e| panic!("{e}"));
    let verified = verifier().verify(&token, BODY, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.claims().exp, NOW + 60);
    assert!(ed25519_signer().with_ttl_seconds(0).is_err());
    assert!(ed25519_signer().with_ttl_seconds(86_401).is_err());
    assert!(matches!(
        ed25519_signer().sign(&JwtMessage {
            audience: "",
            ..message("m")
        }),
        Err(JwtError::InvalidInput(_))
    ));
    assert!(matches!(
        ed25519_signer().sign(&message("a.b")),
        Err(JwtError::InvalidInput(_))
    ));
}

/// A token the verifier must refuse, and how.
struct Refusal {
    what: &'static str,
    token: String,
    body: &'static [u8],
    webhook_id: Option<&'static str>,
    now: i64,
    expected: fn(&JwtError) -> bool,
}

fn refusal(what: &'static str, token: String, expected: fn(&JwtError) -> bool) -> Refusal {
    Refusal {
        what,
        token,
        body: BODY,
        webhook_id: None,
        now: NOW,
        expected,
    }
}

fn check(verifier: &JwtVerifier, case: &Refusal) {
    match verifier.verify_at(&case.token, case.body, case.webhook_id, case.now) {
        Err(error) if (case.expected)(&error) => {}
        other => panic!("{}: unexpected {other:?}", case.what),
    }
}

/// A token whose claims JSON is given verbatim, signed by the trusted key.
fn forge_raw_claims(claims_json: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header().to_string()),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let signature = ed25519_dalek::SigningKey::from_bytes(&SEED).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

#[test]
fn every_check_has_its_own_error() {
    let good = ed25519_signer()
        .sign(&message("msg_1"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rsa = rsa_signer().sign(&message("msg_1")).unwrap_or_else(|e| panic!("{e}"));
    let mut tampered = good.clone();
    let last = tampered.pop().map_or('A', |c| if c == 'A' { 'Q' } else { 'A' });
    tampered.push(last);
    let (rsa_header, rsa_rest) = rsa.split_once('.').unwrap_or_default();
    let confused_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"ed-1"}"#);
    let two_segments = good
        .rsplit_once('.')
        .map(|(input, _)| input.to_owned())
        .unwrap_or_default();
    let duplicate_aud = format!(
        r#"{{"iss":"{ISSUER}","aud":"x","aud":"{AUDIENCE}","iat":{NOW},"exp":{},"jti":"msg_1","body_sha256":"{}"}}"#,
        NOW + 300,
        body_sha256(BODY)
    );
    let header_with = |alg: &str, kid: &str| json!({"alg": alg, "typ": "JWT", "kid": kid});

    let cases = [
        refusal("tampered signature", tampered, |e| {
            matches!(e, JwtError::BadSignature { .. })
        }),
        refusal(
            "alg none",
            forge(&header_with("none", "ed-1"), &claims()),
            |e| matches!(e, JwtError::UnsupportedAlgorithm(alg) if alg == "none"),
        ),
        refusal("alg HS256", forge(&header_with("HS256", "ed-1"), &claims()), |e| {
            matches!(e, JwtError::UnsupportedAlgorithm(_))
        }),
        refusal(
            "RS256 on an Ed25519 kid",
            format!("{confused_header}.{rsa_rest}"),
            |e| matches!(e, JwtError::AlgorithmMismatch { .. }),
        ),
        refusal(
            "EdDSA on an RSA kid",
            forge(&header_with("EdDSA", "rsa-1"), &claims()),
            |e| matches!(e, JwtError::AlgorithmMismatch { .. }),
        ),
        refusal("unknown kid", forge(&header_with("EdDSA", "other"), &claims()), |e| {
            matches!(e, JwtError::UnknownKeyId(_))
        }),
        refusal("no kid", forge(&json!({"alg": "EdDSA"}), &claims()), |e| {
            matches!(e, JwtError::Malformed(_))
        }),
        refusal(
            "crit header",
            forge(&json!({"alg": "EdDSA", "kid": "ed-1", "crit": ["exp"]}), &claims()),
            |e| matches!(e, JwtError::Malformed(_)),
        ),
        refusal(
            "typ JOSE",
            forge(&json!({"alg": "EdDSA", "kid": "ed-1", "typ": "JOSE"}), &claims()),
            |e| matches!(e, JwtError::Malformed(_)),
        ),
        refusal("two segments", two_segments, |e| matches!(e, JwtError::Malformed(_))),
        refusal("padded segment", format!("{rsa_header}=.{rsa_rest}"), |e| {
            matches!(e, JwtError::Malformed(_))
        }),
        refusal("duplicate claim", forge_raw_claims(&duplicate_aud), |e| {
            matches!(e, JwtError::Malformed(_))
        }),
        refusal(
            "iat as a string",
            forge(&header(), &claims_with("iat", json!("1769083200"))),
            |e| matches!(e, JwtError::Malformed(_)),
        ),
        refusal(
            "unbound body",
            forge(&header(), &claims_with("body_sha256", Value::Null)),
            |e| matches!(e, JwtError::UnboundBody),
        ),
        refusal("no jti", forge(&header(), &claims_with("jti", Value::Null)), |e| {
            matches!(e, JwtError::MissingClaim("jti"))
        }),
        refusal(
            "wrong audience",
            forge(&header(), &claims_with("aud", json!("https://attacker.example/"))),
            |e| matches!(e, JwtError::WrongAudience { .. }),
        ),
        refusal(
            "wrong issuer",
            forge(&header(), &claims_with("iss", json!("https://other.example"))),
            |e| matches!(e, JwtError::WrongIssuer { .. }),
        ),
        Refusal {
            body: b"{}",
            ..refusal("other body", good.clone(), |e| matches!(e, JwtError::BodyMismatch))
        },
        Refusal {
            now: NOW + 300 + 61,
            ..refusal("expired beyond leeway", good.clone(), |e| {
                matches!(e, JwtError::Expired { .. })
            })
        },
        Refusal {
            now: NOW - 61,
            ..refusal("issued in the future", good.clone(), |e| {
                matches!(e, JwtError::IssuedInFuture { .. })
            })
        },
        Refusal {
            webhook_id: Some("msg_2"),
            ..refusal("jti is not webhook-id", good.clone(), |e| {
                matches!(e, JwtError::IdMismatch { .. })
            })
        },
        refusal(
            "not valid before a time beyond the leeway",
            forge(&header(), &claims_with("nbf", json!(NOW + 61))),
            |e| matches!(e, JwtError::NotYetValid { .. }),
        ),
        refusal(
            "a lifetime over a day",
            forge(&header(), &claims_with("exp", json!(NOW + 86_401))),
            |e| matches!(e, JwtError::Malformed(_)),
        ),
    ];
    let verifier = verifier();
    for case in &cases {
        check(&verifier, case);
    }
    // nbf within the leeway, and a lifetime of exactly a day, are fine.
    let nbf_soon = forge(&header(), &claims_with("nbf", json!(NOW + 60)));
    assert!(verifier.verify_at(&nbf_soon, BODY, None, NOW).is_ok());
    let a_day = forge(&header(), &claims_with("exp", json!(NOW + 86_400)));
    assert!(verifier.verify_at(&a_day, BODY, None, NOW).is_ok());
    // Verifying from headers needs webhook-id (Standard Webhooks always sends it).
    let without_id = [(WEBHOOK_SIGNATURE, good.as_str())];
    assert!(matches!(
        verifier.verify_headers_at(&without_id[..], BODY, NOW),
        Err(JwtError::MissingHeader { name }) if name == WEBHOOK_ID
    ));
    // Leeway boundaries are inclusive.
    assert!(verifier.verify_at(&good, BODY, None, NOW + 300 + 60).is_ok());
    assert!(verifier.verify_at(&good, BODY, None, NOW - 60).is_ok());
    // The issuer is only checked when configured.
    let other_issuer = forge(&header(), &claims_with("iss", json!("https://other.example")));
    let any_issuer = JwtVerifier::new(JwkSet::from_json(&ed_jwks()).unwrap_or_default(), AUDIENCE);
    assert!(any_issuer.verify_at(&other_issuer, BODY, None, NOW).is_ok());
}

fn ed_jwks() -> String {
    JwkSet::new(vec![(kid("ed-1"), ed25519_signer().public_key())])
        .unwrap_or_default()
        .to_json()
}

#[test]
fn generated_rsa_keys_are_2048_bits_and_sign() {
    let key = RsaPrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(key.public_key().size_bytes(), 256);
    let pem = key.expose_pkcs8_pem().unwrap_or_else(|e| panic!("{e}"));
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let reparsed = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reparsed.public_key(), key.public_key());
    assert!(format!("{key:?}").contains("redacted"));
}
