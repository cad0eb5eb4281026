//! Property tests: sign → verify round-trips, any tampering fails, and no
//! input makes a parser or verifier panic.

use std::collections::{BTreeMap, HashMap};

use herald_signature::{
    Ed25519PublicKey, Ed25519SecretKey, FixedClock, HmacKey, JwkSet, JwtVerifier, KeyId, PublicKey, Signer, SigningKey,
    TrustedKey, Verifier, VerifyError,
};
use proptest::prelude::*;

/// Valid ids: visible ASCII without `.` (0x21–0x2D, 0x2F–0x7E).
fn valid_id() -> impl Strategy<Value = String> {
    "[!-\\-/-~]{1,256}"
}

fn keys(hmac_seed: [u8; 32], ed_seed: [u8; 32]) -> (Signer, Vec<TrustedKey>) {
    let hmac = HmacKey::from_raw_bytes(&hmac_seed).unwrap_or_else(|e| panic!("{e}"));
    let ed = Ed25519SecretKey::from_seed(&ed_seed);
    let trusted = vec![TrustedKey::Hmac(hmac.clone()), TrustedKey::Ed25519(ed.public_key())];
    let signer = Signer::new(vec![SigningKey::Hmac(hmac), SigningKey::Ed25519(ed)]).unwrap_or_else(|e| panic!("{e}"));
    (signer, trusted)
}

fn headers(id: &str, timestamp: &str, signature: &str) -> Vec<(String, String)> {
    vec![
        ("webhook-id".to_owned(), id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_owned()),
        ("webhook-signature".to_owned(), signature.to_owned()),
    ]
}

#[derive(Debug, Clone)]
enum Tamper {
    Body(usize, u8),
    AppendToBody(u8),
    Id(char),
    Timestamp,
    Signature(usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Tamper::Body(at, xor)),
        any::<u8>().prop_map(Tamper::AppendToBody),
        proptest::char::range('a', 'z').prop_map(Tamper::Id),
        Just(Tamper::Timestamp),
        any::<usize>().prop_map(Tamper::Signature),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn signatures_round_trip_under_each_key(
        id in valid_id(),
        timestamp in 0..=i64::MAX,
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        hmac_seed in any::<[u8; 32]>(),
        ed_seed in any::<[u8; 32]>(),
    ) {
        let (signer, trusted) = keys(hmac_seed, ed_seed);
        let signature = signer.sign(&id, timestamp, &body).unwrap_or_else(|e| panic!("{e}"));
        let headers = headers(&id, &timestamp.to_string(), &signature);
        for key in trusted {
            let verified = Verifier::new(vec![key]).verify_at(&headers, &body, timestamp);
            prop_assert_eq!(verified.map(|v| v.id().to_owned()).ok(), Some(id.clone()));
        }
    }

    #[test]
    fn any_tampering_fails(
        id in valid_id(),
        timestamp in 0..i64::MAX,
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        seed in any::<[u8; 32]>(),
        use_ed25519 in any::<bool>(),
        tamper in tamper(),
    ) {
        // One key, so tampering with its one entry leaves nothing valid.
        let (signing_key, trusted_key) = if use_ed25519 {
            let key = Ed25519SecretKey::from_seed(&seed);
            (SigningKey::Ed25519(key.clone()), TrustedKey::Ed25519(key.public_key()))
        } else {
            let key = HmacKey::from_raw_bytes(&seed).unwrap_or_else(|e| panic!("{e}"));
            (SigningKey::Hmac(key.clone()), TrustedKey::Hmac(key))
        };
        let signer = Signer::new(vec![signing_key]).unwrap_or_else(|e| panic!("{e}"));
        let signature = signer.sign(&id, timestamp, &body).unwrap_or_else(|e| panic!("{e}"));
        let (mut id, mut timestamp_text, mut signature, mut body) = (id, timestamp.to_string(), signature, body);
        match tamper {
            Tamper::Body(at, xor) if !body.is_empty() => {
                let at = at % body.len();
                body[at] ^= xor;
            }
            Tamper::Body(_, xor) | Tamper::AppendToBody(xor) => body.push(xor),
            Tamper::Id(extra) => id.push(extra),
            Tamper::Timestamp => timestamp_text = (timestamp + 1).to_string(),
            Tamper::Signature(at) => {
                // Change one base64 character after the label, keeping the shape.
                let positions: Vec<usize> = signature
                    .char_indices()
                    .filter(|(i, c)| *i >= 4 && c.is_ascii_alphanumeric())
                    .map(|(i, _)| i)
                    .collect();
                let position = positions[at % positions.len()];
                let replacement = if signature.as_bytes()[position] == b'A' { "B" } else { "A" };
                signature.replace_range(position..=position, replacement);
            }
        }
        let headers = headers(&id, &timestamp_text, &signature);
        let result = Verifier::new(vec![trusted_key]).verify_at(&headers, &body, timestamp);
        prop_assert!(
            matches!(result, Err(VerifyError::NoMatchingSignature { .. }) | Err(VerifyError::InvalidId(_))),
            "tampered message verified: {:?}", result
        );
    }
}

/// Header values built to reach deep into the parser: known and unknown
/// labels, plausible and absurd base64, stray spaces, non-ASCII bytes.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    let entry = (
        prop_oneof![
            Just("v1".to_owned()),
            Just("v1a".to_owned()),
            Just("v2".to_owned()),
            Just(String::new()),
            Just("V1".to_owned()),
            "[a-z0-9]{0,4}",
        ],
        prop_oneof![Just(","), Just(""), Just(",,")],
        "[A-Za-z0-9+/=_-]{0,100}",
    )
        .prop_map(|(label, comma, payload)| format!("{label}{comma}{payload}"));
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec((entry, " {0,3}"), 0..80).prop_map(|entries| entries
            .into_iter()
            .map(|(e, s)| e + &s)
            .collect::<String>()
            .into_bytes()),
        "[0-9]{0,40}".prop_map(String::into_bytes),
        "[ -~]{0,64}".prop_map(String::into_bytes),
        (1usize..20_000).prop_map(|n| " ".repeat(n).into_bytes()),
        (1usize..3_000).prop_map(|n| "v1,AAAA ".repeat(n).into_bytes()),
        any::<String>().prop_map(String::into_bytes),
    ]
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("webhook-id".to_owned()),
        Just("Webhook-Timestamp".to_owned()),
        Just("WEBHOOK-SIGNATURE".to_owned()),
        any::<String>(),
    ]
}

fn verifier() -> Verifier {
    let hmac = HmacKey::from_raw_bytes(&[7; 32]).unwrap_or_else(|e| panic!("{e}"));
    let ed = Ed25519SecretKey::from_seed(&[9; 32]).public_key();
    Verifier::new(vec![TrustedKey::Hmac(hmac), TrustedKey::Ed25519(ed)]).with_clock(FixedClock(1_700_000_000))
}

fn jwt_verifier() -> JwtVerifier {
    let ed = Ed25519SecretKey::from_seed(&[9; 32]).public_key();
    let kid = KeyId::parse("k").unwrap_or_else(|e| panic!("{e}"));
    let set = JwkSet::new(vec![(kid, PublicKey::Ed25519(ed))]).unwrap_or_else(|e| panic!("{e}"));
    JwtVerifier::new(set, "https://example.com/hook").with_clock(FixedClock(1_700_000_000))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_header_map_makes_verification_panic(
        pairs in proptest::collection::vec((header_name(), header_value()), 0..12),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let verifier = verifier();
        let jwt = jwt_verifier();
        let _ = verifier.verify(&pairs, &body);
        let _ = jwt.verify_headers(&pairs, &body);
        let map: HashMap<String, Vec<u8>> = pairs.iter().cloned().collect();
        let _ = verifier.verify(&map, &body);
        let tree: BTreeMap<String, Vec<u8>> = pairs.iter().cloned().collect();
        let _ = verifier.verify(&tree, &body);
        let mut header_map = http::HeaderMap::new();
        for (name, value) in &pairs {
            if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_bytes(value)) {
                header_map.append(name, value);
            }
        }
        let _ = verifier.verify(&header_map, &body);
        let _ = jwt.verify_headers(&header_map, &body);
    }

    #[test]
    fn valid_headers_with_arbitrary_signatures_never_panic(
        id in valid_id(),
        timestamp in "[0-9]{1,25}",
        signature in header_value(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let pairs: [(&str, &[u8]); 3] = [
            ("webhook-id", id.as_bytes()),
            ("webhook-timestamp", timestamp.as_bytes()),
            ("webhook-signature", &signature),
        ];
        let _ = verifier().verify_at(&pairs, &body, timestamp.parse().unwrap_or(0));
    }

    #[test]
    fn no_string_makes_a_parser_panic(text in any::<String>(), prefix in prop_oneof![Just("whsec_"), Just("whsk_"), Just("whpk_"), Just("")]) {
        let text = format!("{prefix}{text}");
        let _ = HmacKey::parse(&text);
        let _ = Ed25519SecretKey::parse(&text);
        let _ = Ed25519PublicKey::parse(&text);
        let _ = SigningKey::parse(&text);
        let _ = TrustedKey::parse(&text);
        let _ = JwkSet::from_json(&text);
        let _ = jwt_verifier().verify(&text, b"", Some("id"));
    }

    #[test]
    fn no_token_shape_makes_jwt_verification_panic(
        segments in proptest::collection::vec("[A-Za-z0-9_-]{0,120}", 0..5),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let token = segments.join(".");
        let _ = jwt_verifier().verify(&token, &body, None);
    }
}
