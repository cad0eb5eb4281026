//! Interop with independent implementations, both directions:
//! PyPI `standardwebhooks`, npm `standardwebhooks`, PyPI `cryptography`
//! (Ed25519) and PyJWT. Every value crossing the boundary is produced by
//! the real APIs on each side; each foreign verifier also sees a tampered
//! twin of every case, so a verifier that accepts everything would fail.
//!
//! The environments are built on first use under `CARGO_TARGET_TMPDIR`
//! (see `interop/tools.rs`).

#[path = "interop/tools.rs"]
mod tools;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_signature::{
    Clock, Ed25519SecretKey, HmacKey, JwkSet, JwtMessage, JwtSigner, JwtSigningKey, KeyId, PublicKey, RsaPrivateKey,
    Signer, SigningKey, SystemClock, TrustedKey, Verifier,
};
use serde_json::{Value, json};

/// Bodies as a sender would send them: compact and pretty JSON, non-ASCII
/// text, an empty object, and a 20 KB payload.
fn bodies() -> Vec<String> {
    vec![
        r#"{"type":"batch.succeeded","version":"v1","data":{"id":"batch_123"}}"#.to_owned(),
        "{\n  \"type\": \"video.generated\",\n  \"data\": {\"id\": \"v_1\"}\n}".to_owned(),
        r#"{"type":"interaction.completed","data":{"note":"café ✓ 🚀 日本"}}"#.to_owned(),
        "{}".to_owned(),
        format!(
            r#"{{"type":"batch.failed","data":{{"padding":"{}"}}}}"#,
            "x".repeat(20_000)
        ),
    ]
}

const IDS: [&str; 3] = [
    "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    "7a2486b3-31cf-4bd3-a460-df8845d16cd5",
    "01JH8XKQ7ZB4V2N9M3C5D6E7F8",
];

fn now() -> i64 {
    SystemClock.now_unix_seconds()
}

fn hmac_key(len: usize) -> HmacKey {
    let bytes: Vec<u8> = (0..len).map(|i| u8::try_from(i * 7 % 251).unwrap_or(0)).collect();
    // Through the text form, to exercise what the other side parses.
    let text = format!("whsec_{}", STANDARD.encode(&bytes));
    HmacKey::parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn tampered(body: &str) -> String {
    format!("{body} ")
}

/// Rust signs (rotation: two HMAC keys and an Ed25519 key in one header);
/// the foreign library verifies with each HMAC secret alone.
fn herald_v1_cases() -> (Vec<Value>, Vec<bool>) {
    let timestamp = now();
    let keys = [hmac_key(24), hmac_key(32), hmac_key(64)];
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (index, body) in bodies().iter().enumerate() {
        let id = IDS[index % IDS.len()];
        let current = &keys[index % keys.len()];
        let previous = &keys[(index + 1) % keys.len()];
        let signer = Signer::new(vec![
            SigningKey::Hmac(current.clone()),
            SigningKey::Hmac(previous.clone()),
            SigningKey::Ed25519(Ed25519SecretKey::generate()),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let signature = signer
            .sign(id, timestamp, body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        for secret in [current, previous] {
            let secret = secret.expose_secret().to_string();
            let case =
                json!({"secret": secret, "id": id, "timestamp": timestamp, "signature": signature, "body": body});
            let mut twin = case.clone();
            twin["body"] = Value::from(tampered(body));
            cases.extend([case, twin]);
            expected.extend([true, false]);
        }
    }
    (cases, expected)
}

fn assert_verdicts(library: &str, results: &Value, expected: &[bool]) {
    let results = results["verify"]
        .as_array()
        .unwrap_or_else(|| panic!("{library}: no verify results"));
    assert_eq!(results.len(), expected.len(), "{library}: one result per case");
    for (index, (result, expected)) in results.iter().zip(expected).enumerate() {
        assert_eq!(
            result["ok"].as_bool(),
            Some(*expected),
            "{library}, case {index}: {result}"
        );
    }
}

/// The foreign library signs with secrets it generated; Herald parses those
/// secrets strictly and verifies.
fn check_foreign_v1_signatures(library: &str, run: impl Fn(&Value) -> Value) {
    let timestamp = now();
    let requests: Vec<Value> = bodies()
        .iter()
        .enumerate()
        .map(|(index, body)| json!({"id": IDS[index % IDS.len()], "timestamp": timestamp, "body": body}))
        .collect();
    let output = run(&json!({ "sign": requests }));
    let signed = output["sign"]
        .as_array()
        .unwrap_or_else(|| panic!("{library}: no sign results"));
    assert_eq!(signed.len(), requests.len());
    for (request, result) in requests.iter().zip(signed) {
        let secret = result["secret"].as_str().unwrap_or_default();
        let key = HmacKey::parse(secret).unwrap_or_else(|e| panic!("{library} secret {secret:?}: {e}"));
        let verifier = Verifier::new(vec![TrustedKey::Hmac(key)]);
        let headers = [
            ("Webhook-Id", request["id"].as_str().unwrap_or_default().to_owned()),
            ("Webhook-Timestamp", timestamp.to_string()),
            (
                "Webhook-Signature",
                result["signature"].as_str().unwrap_or_default().to_owned(),
            ),
        ];
        let body = request["body"].as_str().unwrap_or_default();
        assert!(
            verifier.verify(&headers, body.as_bytes()).is_ok(),
            "{library} signature {result} does not verify"
        );
        assert!(
            verifier.verify(&headers, tampered(body).as_bytes()).is_err(),
            "{library}: tampered body verifies"
        );
    }
}

fn python_standardwebhooks(input: &Value) -> Value {
    tools::run_script(&tools::python(), "standardwebhooks_py.py", &[], input)
}

fn node_standardwebhooks(input: &Value) -> Value {
    let modules = tools::node_modules();
    tools::run_script(
        &tools::node(),
        "standardwebhooks_node.js",
        &[("NODE_PATH", &modules)],
        input,
    )
}

#[test]
fn herald_v1_signatures_verify_with_python_standardwebhooks() {
    let (cases, expected) = herald_v1_cases();
    assert_verdicts(
        "PyPI standardwebhooks",
        &python_standardwebhooks(&json!({ "verify": cases })),
        &expected,
    );
}

#[test]
fn python_standardwebhooks_signatures_verify_with_herald() {
    check_foreign_v1_signatures("PyPI standardwebhooks", python_standardwebhooks);
}

#[test]
fn herald_v1_signatures_verify_with_npm_standardwebhooks() {
    let (cases, expected) = herald_v1_cases();
    assert_verdicts(
        "npm standardwebhooks",
        &node_standardwebhooks(&json!({ "verify": cases })),
        &expected,
    );
}

#[test]
fn npm_standardwebhooks_signatures_verify_with_herald() {
    check_foreign_v1_signatures("npm standardwebhooks", node_standardwebhooks);
}

#[test]
fn herald_v1a_signatures_verify_with_python_cryptography() {
    let timestamp = now();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (index, body) in bodies().iter().enumerate() {
        let key = Ed25519SecretKey::generate();
        let public = key.public_key();
        let kid = KeyId::parse(&format!("k{index}")).unwrap_or_else(|e| panic!("{e}"));
        let jwks = JwkSet::new(vec![(kid, PublicKey::Ed25519(public))]).unwrap_or_else(|e| panic!("{e}"));
        let jwk = serde_json::from_str::<Value>(&jwks.to_json()).unwrap_or_default()["keys"][0].clone();
        // An HMAC entry first: the consumer must skip it.
        let signer = Signer::new(vec![SigningKey::Hmac(HmacKey::generate()), SigningKey::Ed25519(key)])
            .unwrap_or_else(|e| panic!("{e}"));
        let id = IDS[index % IDS.len()];
        let signature = signer
            .sign(id, timestamp, body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let case = json!({
            "public_key": public.to_string(), "jwk": jwk, "id": id, "timestamp": timestamp,
            "body_b64": STANDARD.encode(body), "signature": signature,
        });
        let mut twin = case.clone();
        twin["body_b64"] = Value::from(STANDARD.encode(tampered(body)));
        cases.extend([case, twin]);
        expected.extend([true, false]);
    }
    let output = tools::run_script(
        &tools::python(),
        "ed25519_cryptography.py",
        &[],
        &json!({ "verify": cases }),
    );
    let results = output["verify"]
        .as_array()
        .unwrap_or_else(|| panic!("no verify results: {output}"));
    assert_eq!(results.len(), expected.len());
    for (result, expected) in results.iter().zip(expected) {
        assert_eq!(result["ok_whpk"].as_bool(), Some(expected), "via whpk_: {result}");
        assert_eq!(result["ok_jwk"].as_bool(), Some(expected), "via JWKS: {result}");
    }
}

#[test]
fn python_cryptography_v1a_signatures_verify_with_herald() {
    let timestamp = now();
    let requests: Vec<Value> = bodies()
        .iter()
        .enumerate()
        .map(|(index, body)| json!({"id": IDS[index % IDS.len()], "timestamp": timestamp, "body_b64": STANDARD.encode(body)}))
        .collect();
    let output = tools::run_script(
        &tools::python(),
        "ed25519_cryptography.py",
        &[],
        &json!({ "sign": requests }),
    );
    let signed = output["sign"]
        .as_array()
        .unwrap_or_else(|| panic!("no sign results: {output}"));
    for ((request, result), body) in requests.iter().zip(signed).zip(bodies()) {
        let key =
            TrustedKey::parse(result["public_key"].as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let headers = [
            ("webhook-id", request["id"].as_str().unwrap_or_default().to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                result["signature"].as_str().unwrap_or_default().to_owned(),
            ),
        ];
        let verifier = Verifier::new(vec![key]);
        assert!(
            verifier.verify(&headers, body.as_bytes()).is_ok(),
            "cryptography signature {result} does not verify"
        );
        assert!(verifier.verify(&headers, tampered(&body).as_bytes()).is_err());
    }
}

#[test]
fn herald_jwts_verify_with_pyjwt_and_the_exported_jwks() {
    const ISSUER: &str = "https://herald.example";
    const AUDIENCE: &str = "https://receiver.example/webhooks";
    let rsa = RsaPrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let signers = [
        JwtSigner::new(
            KeyId::parse("ed-1").unwrap_or_else(|e| panic!("{e}")),
            JwtSigningKey::Ed25519(Ed25519SecretKey::generate()),
            ISSUER,
        ),
        JwtSigner::new(
            KeyId::parse("rsa-1").unwrap_or_else(|e| panic!("{e}")),
            JwtSigningKey::Rsa(rsa),
            ISSUER,
        ),
    ]
    .map(|signer| signer.unwrap_or_else(|e| panic!("{e}")));
    let jwks = JwkSet::new(signers.iter().map(|s| (s.kid().clone(), s.public_key())).collect())
        .unwrap_or_else(|e| panic!("{e}"));
    let issued_at = now();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (index, body) in bodies().iter().enumerate() {
        let signer = &signers[index % signers.len()];
        let id = IDS[index % IDS.len()];
        let token = signer
            .sign(&JwtMessage {
                audience: AUDIENCE,
                msg_id: id,
                issued_at,
                body: body.as_bytes(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        let case = json!({"token": token, "audience": AUDIENCE, "issuer": ISSUER, "webhook_id": id, "body_b64": STANDARD.encode(body)});
        let mut other_body = case.clone();
        other_body["body_b64"] = Value::from(STANDARD.encode(tampered(body)));
        let mut other_audience = case.clone();
        other_audience["audience"] = Value::from("https://attacker.example/");
        cases.extend([case, other_body, other_audience]);
        expected.extend([true, false, false]);
    }
    let jwks_json: Value = serde_json::from_str(&jwks.to_json()).unwrap_or_default();
    let results = tools::run_script(
        &tools::python(),
        "jwt_pyjwt.py",
        &[],
        &json!({"jwks": jwks_json, "cases": cases}),
    );
    let results = results.as_array().unwrap_or_else(|| panic!("no results: {results}"));
    assert_eq!(results.len(), expected.len());
    let mut algorithms = Vec::new();
    for (result, expected) in results.iter().zip(expected) {
        assert_eq!(result["ok"].as_bool(), Some(expected), "PyJWT: {result}");
        if expected {
            algorithms.push(result["alg"].as_str().unwrap_or_default().to_owned());
            assert_eq!(result["claims"]["iss"], ISSUER);
        }
    }
    assert!(
        algorithms.contains(&"EdDSA".to_owned()) && algorithms.contains(&"RS256".to_owned()),
        "{algorithms:?}"
    );
}
