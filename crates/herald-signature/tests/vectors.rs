//! Every Standard Webhooks conformance vector, data-driven: the JSON file is
//! turned into `Case`s and each goes through the one `check` helper.

use base64::Engine as _;
use herald_signature::{
    Ed25519PublicKey, Ed25519SecretKey, HmacKey, IdError, JwkSet, KeyError, KeyKind, SignError, Signer, SigningKey,
    TrustedKey, Verifier, VerifyError,
};
use serde_json::Value;

const VECTORS: &str = include_str!("vectors/standard-webhooks-vectors.json");

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Valid,
    NoMatchingSignature,
    TimestampTooNew,
    InvalidId,
}

#[derive(Debug)]
struct Case {
    name: String,
    keys: Vec<TrustedKey>,
    /// Present when the vector has secret material: signing must reproduce
    /// `signature` exactly (HMAC and Ed25519 are deterministic).
    signer: Option<Signer>,
    msg_id: String,
    timestamp: String,
    payload: String,
    signature: String,
    now: i64,
    tolerance: u64,
    expect: Expect,
}

fn check(case: &Case) {
    let headers = [
        ("webhook-id", case.msg_id.as_str()),
        ("webhook-timestamp", case.timestamp.as_str()),
        ("webhook-signature", case.signature.as_str()),
    ];
    let verifier = Verifier::new(case.keys.clone()).with_tolerance_seconds(case.tolerance);
    let result = verifier.verify_at(&headers, case.payload.as_bytes(), case.now);
    let outcome = match &result {
        Ok(_) => Expect::Valid,
        Err(VerifyError::NoMatchingSignature { .. }) => Expect::NoMatchingSignature,
        Err(VerifyError::TimestampTooNew { .. }) => Expect::TimestampTooNew,
        Err(VerifyError::InvalidId(_)) => Expect::InvalidId,
        Err(other) => panic!("{}: unexpected error {other:?}", case.name),
    };
    assert_eq!(outcome, case.expect, "{}: verification gave {result:?}", case.name);

    let Some(signer) = &case.signer else { return };
    let timestamp = case.timestamp.parse::<i64>().unwrap_or(-1);
    let signed = signer.sign(&case.msg_id, timestamp, case.payload.as_bytes());
    match case.expect {
        Expect::Valid => assert_eq!(signed.as_deref(), Ok(case.signature.as_str()), "{}: signing", case.name),
        Expect::InvalidId => assert!(
            matches!(signed, Err(SignError::InvalidId(_))),
            "{}: {signed:?}",
            case.name
        ),
        _ => {}
    }
}

fn text<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field]
        .as_str()
        .unwrap_or_else(|| panic!("vector field {field} is a string: {vector}"))
}

fn integer(vector: &Value, field: &str) -> i64 {
    vector[field]
        .as_i64()
        .unwrap_or_else(|| panic!("vector field {field} is an integer: {vector}"))
}

/// The strict parser for spec-sized secrets; for shorter ones, assert the
/// strict parser refuses them and fall back to the raw-bytes constructor.
fn hmac_key(vector: &Value) -> HmacKey {
    let secret = text(vector, "secret");
    let declared_len = usize::try_from(integer(vector, "secret_bytes_len")).unwrap_or(0);
    let strict = HmacKey::parse(secret);
    if declared_len >= 24 {
        let key = strict.unwrap_or_else(|e| panic!("{secret}: {e}"));
        assert_eq!(key.len(), declared_len);
        return key;
    }
    assert_eq!(
        strict.map(|k| k.len()),
        Err(KeyError::TooShort {
            kind: KeyKind::HmacSecret,
            len: declared_len,
            min: 24
        }),
        "the strict parser refuses a {declared_len}-byte secret"
    );
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap_or_else(|e| panic!("{secret}: {e}"));
    HmacKey::from_raw_bytes(&raw).unwrap_or_else(|e| panic!("{secret}: {e}"))
}

fn symmetric_case(vector: &Value) -> Case {
    let key = hmac_key(vector);
    let timestamp = integer(vector, "timestamp");
    Case {
        name: text(vector, "name").to_owned(),
        keys: vec![TrustedKey::Hmac(key.clone())],
        signer: Some(Signer::new(vec![SigningKey::Hmac(key)]).unwrap_or_else(|e| panic!("{e}"))),
        msg_id: text(vector, "msg_id").to_owned(),
        timestamp: timestamp.to_string(),
        payload: text(vector, "payload").to_owned(),
        signature: text(vector, "expected_signature").to_owned(),
        now: timestamp,
        tolerance: 300,
        expect: if vector["valid"].as_bool() == Some(true) {
            Expect::Valid
        } else {
            Expect::NoMatchingSignature
        },
    }
}

/// One case per accepted encoding of the vector's public key: as given
/// (raw or SPKI), the derived raw `whpk_`, and the derived JWK via a JWKS.
fn asymmetric_cases(vector: &Value) -> Vec<Case> {
    let name = text(vector, "name");
    let given = Ed25519PublicKey::parse(text(vector, "public_key")).unwrap_or_else(|e| panic!("{name}: {e}"));
    let raw = Ed25519PublicKey::parse(text(vector, "derived_raw_public_key")).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(given, raw, "{name}: SPKI and raw forms are the same key");
    let mut jwk = vector["derived_jwk"].clone();
    jwk["kid"] = Value::from("vector-key");
    let jwks = JwkSet::from_json(&serde_json::json!({ "keys": [jwk] }).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let signer = vector.get("secret_key").and_then(Value::as_str).map(|secret| {
        let secret = Ed25519SecretKey::parse(secret).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            secret.public_key(),
            given,
            "{name}: the secret key derives the public key"
        );
        Signer::new(vec![SigningKey::Ed25519(secret)]).unwrap_or_else(|e| panic!("{e}"))
    });
    let timestamp = integer(vector, "timestamp");
    let encodings = [
        ("as given", vec![TrustedKey::Ed25519(given)]),
        ("raw whpk_", vec![TrustedKey::Ed25519(raw)]),
        ("JWKS", jwks.trusted_keys()),
    ];
    encodings
        .into_iter()
        .map(|(encoding, keys)| Case {
            name: format!("{name} ({encoding})"),
            keys,
            signer: signer.clone(),
            msg_id: text(vector, "msg_id").to_owned(),
            timestamp: timestamp.to_string(),
            payload: text(vector, "payload").to_owned(),
            signature: text(vector, "expected_signature").to_owned(),
            now: timestamp,
            tolerance: 300,
            expect: if vector["valid"].as_bool() == Some(true) {
                Expect::Valid
            } else {
                Expect::NoMatchingSignature
            },
        })
        .collect()
}

/// Negative and header cases reuse a symmetric base vector and override
/// some of its fields.
fn derived_case(vector: &Value, symmetric: &[Value]) -> Case {
    let name = text(vector, "name");
    let expect = match (vector["valid"].as_bool(), name) {
        (Some(true), _) => Expect::Valid,
        (_, "timestamp-outside-tolerance") => Expect::TimestampTooNew,
        (_, "id-with-full-stop") => Expect::InvalidId,
        _ => Expect::NoMatchingSignature,
    };
    // `id-with-full-stop` has no base: any key shows the id is refused first.
    let base_name = vector
        .get("base_vector")
        .and_then(Value::as_str)
        .unwrap_or("reference-libs-sign");
    let base = symmetric
        .iter()
        .find(|candidate| candidate["name"] == base_name)
        .unwrap_or_else(|| panic!("{name}: base vector {base_name} exists"));
    let mut case = symmetric_case(base);
    case.name = name.to_owned();
    case.expect = expect;
    if let Some(signature) = vector.get("webhook_signature").and_then(Value::as_str) {
        case.signature = signature.to_owned();
    }
    if let Some(msg_id) = vector.get("msg_id").and_then(Value::as_str) {
        case.msg_id = msg_id.to_owned();
    }
    if let Some(timestamp) = vector.get("timestamp_header").and_then(Value::as_str) {
        case.timestamp = timestamp.to_owned();
    }
    if let Some(now) = vector.get("now").and_then(Value::as_i64) {
        case.now = now;
    }
    if let Some(tolerance) = vector.get("tolerance_seconds").and_then(Value::as_u64) {
        case.tolerance = tolerance;
    }
    // The signature header was overridden: signing can only be checked to
    // refuse the invalid id.
    if expect != Expect::InvalidId {
        case.signer = None;
    }
    case
}

fn section<'a>(document: &'a Value, name: &str) -> &'a [Value] {
    document[name]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("section {name} exists"))
}

#[test]
fn every_conformance_vector_passes() {
    let document: Value = serde_json::from_str(VECTORS).unwrap_or_else(|e| panic!("vectors parse: {e}"));
    let symmetric = section(&document, "symmetric");
    let asymmetric = section(&document, "asymmetric");
    let negative = section(&document, "negative_and_header_cases");
    let mut cases: Vec<Case> = symmetric.iter().map(symmetric_case).collect();
    cases.extend(asymmetric.iter().flat_map(asymmetric_cases));
    cases.extend(negative.iter().map(|vector| derived_case(vector, symmetric)));
    assert_eq!(cases.len(), symmetric.len() + 3 * asymmetric.len() + negative.len());
    assert_eq!(
        symmetric.len() + asymmetric.len() + negative.len(),
        13,
        "the file has 13 vectors"
    );
    for case in &cases {
        check(case);
    }
}

#[test]
fn full_stop_in_id_is_refused_with_its_offset() {
    assert_eq!(
        herald_signature::validate_id("msg.with.dots"),
        Err(IdError::FullStop { offset: 3 })
    );
}
