//! Cost of Herald's signatures over the raw primitives, 1 KiB bodies.
//!
//! Run: `cargo bench -p herald-signature --bench signature`. Criterion
//! measures every operation in the same run; at the end a table prints each
//! Herald operation beside the raw primitive it is built on (the typical
//! time criterion reports: regression slope, else mean).
//!
//! Raw baselines: HMAC-SHA256 keyed per call over the concatenated signed
//! content (what a straightforward implementation does), the same HMAC with
//! the key schedule precomputed, and ed25519-dalek sign/verify over the
//! concatenated content. Herald's numbers include everything a sender or
//! receiver pays: id and timestamp checks, header parsing, base64, the
//! header string allocation.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::Criterion;
use ed25519_dalek::{Signer as _, Verifier as _};
use herald_signature::{Ed25519SecretKey, HmacKey, Signer, SigningKey, TrustedKey, Verifier};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const ID: &str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const TIMESTAMP: i64 = 1_769_083_200;
const SECRET: [u8; 32] = [0x5a; 32];
const SEED: [u8; 32] = [0x17; 32];

/// Rows of the final table: (criterion id, label, id of the raw baseline).
const TABLE: [(&str, &str, Option<&str>); 9] = [
    ("raw/hmac_sha256", "raw HMAC-SHA256 (keyed per call)", None),
    (
        "raw/hmac_sha256_prekeyed",
        "raw HMAC-SHA256 (key schedule cached)",
        Some("raw/hmac_sha256"),
    ),
    (
        "herald/v1_sign",
        "Herald v1 sign (header value)",
        Some("raw/hmac_sha256"),
    ),
    (
        "herald/v1_verify",
        "Herald v1 verify (headers → verdict)",
        Some("raw/hmac_sha256"),
    ),
    ("raw/ed25519_sign", "raw Ed25519 sign", None),
    (
        "herald/v1a_sign",
        "Herald v1a sign (header value)",
        Some("raw/ed25519_sign"),
    ),
    ("raw/ed25519_verify", "raw Ed25519 verify", None),
    (
        "herald/v1a_verify",
        "Herald v1a verify (headers → verdict)",
        Some("raw/ed25519_verify"),
    ),
    (
        "herald/v1_plus_v1a_verify_v1_key",
        "Herald verify, v1+v1a header, HMAC key",
        Some("raw/hmac_sha256"),
    ),
];

fn body() -> Vec<u8> {
    let mut body = br#"{"type":"batch.succeeded","version":"v1","data":{"id":"batch_123","padding":""#.to_vec();
    body.resize(1024 - 3, b'x');
    body.extend_from_slice(br#""}}"#);
    body
}

fn signed_content(body: &[u8]) -> Vec<u8> {
    let mut content = format!("{ID}.{TIMESTAMP}.").into_bytes();
    content.extend_from_slice(body);
    content
}

fn headers(signature: String) -> [(&'static str, String); 3] {
    [
        ("webhook-id", ID.to_owned()),
        ("webhook-timestamp", TIMESTAMP.to_string()),
        ("webhook-signature", signature),
    ]
}

fn benches(c: &mut Criterion) {
    let body = body();
    assert_eq!(body.len(), 1024);
    let content = signed_content(&body);

    let hmac_key = HmacKey::from_raw_bytes(&SECRET).unwrap_or_else(|e| panic!("{e}"));
    let ed_key = Ed25519SecretKey::from_seed(&SEED);
    let v1_signer = Signer::new(vec![SigningKey::Hmac(hmac_key.clone())]).unwrap_or_else(|e| panic!("{e}"));
    let v1a_signer = Signer::new(vec![SigningKey::Ed25519(ed_key.clone())]).unwrap_or_else(|e| panic!("{e}"));
    let both_signer = Signer::new(vec![
        SigningKey::Hmac(hmac_key.clone()),
        SigningKey::Ed25519(ed_key.clone()),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let v1_verifier = Verifier::new(vec![TrustedKey::Hmac(hmac_key)]);
    let v1a_verifier = Verifier::new(vec![TrustedKey::Ed25519(ed_key.public_key())]);
    let sign = |signer: &Signer| signer.sign(ID, TIMESTAMP, &body).unwrap_or_else(|e| panic!("{e}"));
    let v1_headers = headers(sign(&v1_signer));
    let v1a_headers = headers(sign(&v1a_signer));
    let both_headers = headers(sign(&both_signer));

    let mut group = c.benchmark_group("raw");
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(black_box(&SECRET)).unwrap_or_else(|e| panic!("{e}"));
            mac.update(black_box(&content));
            mac.finalize().into_bytes()
        });
    });
    let prekeyed = Hmac::<Sha256>::new_from_slice(&SECRET).unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("hmac_sha256_prekeyed", |b| {
        b.iter(|| {
            let mut mac = black_box(&prekeyed).clone();
            mac.update(black_box(&content));
            mac.finalize().into_bytes()
        });
    });
    let dalek_key = ed25519_dalek::SigningKey::from_bytes(&SEED);
    let dalek_public = dalek_key.verifying_key();
    let dalek_signature = dalek_key.sign(&content);
    group.bench_function("ed25519_sign", |b| {
        b.iter(|| black_box(&dalek_key).sign(black_box(&content)))
    });
    group.bench_function("ed25519_verify", |b| {
        b.iter(|| {
            black_box(&dalek_public)
                .verify(black_box(&content), black_box(&dalek_signature))
                .is_ok()
        });
    });
    group.finish();

    let mut group = c.benchmark_group("herald");
    group.bench_function("v1_sign", |b| {
        b.iter(|| black_box(&v1_signer).sign(ID, TIMESTAMP, black_box(&body)))
    });
    group.bench_function("v1_verify", |b| {
        b.iter(|| {
            black_box(&v1_verifier)
                .verify_at(black_box(&v1_headers), black_box(&body), TIMESTAMP)
                .is_ok()
        });
    });
    group.bench_function("v1a_sign", |b| {
        b.iter(|| black_box(&v1a_signer).sign(ID, TIMESTAMP, black_box(&body)))
    });
    group.bench_function("v1a_verify", |b| {
        b.iter(|| {
            black_box(&v1a_verifier)
                .verify_at(black_box(&v1a_headers), black_box(&body), TIMESTAMP)
                .is_ok()
        });
    });
    group.bench_function("v1_plus_v1a_verify_v1_key", |b| {
        b.iter(|| {
            black_box(&v1_verifier)
                .verify_at(black_box(&both_headers), black_box(&body), TIMESTAMP)
                .is_ok()
        });
    });
    group.finish();
}

/// `target/criterion`, where criterion writes its estimates by default.
fn output_directory() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("criterion")
}

/// The typical time of a benchmark in nanoseconds, as criterion reports it.
fn typical_nanoseconds(id: &str) -> Option<f64> {
    let path = output_directory().join(id).join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let slope = estimates["slope"]["point_estimate"].as_f64();
    slope.or_else(|| estimates["mean"]["point_estimate"].as_f64())
}

fn format_time(nanoseconds: f64) -> String {
    if nanoseconds >= 1000.0 {
        format!("{:.2} µs", nanoseconds / 1000.0)
    } else {
        format!("{nanoseconds:.0} ns")
    }
}

fn print_table() {
    println!("\nSignatures, 1 KiB body (typical time per operation)\n");
    println!(
        "| {:<42} | {:>10} | {:>22} |",
        "operation", "time/op", "ratio to raw primitive"
    );
    println!("|{:-<44}|{:->12}|{:->24}|", "", "", "");
    for (id, label, baseline) in TABLE {
        let Some(time) = typical_nanoseconds(id) else {
            println!("| {label:<42} | {:>10} | {:>22} |", "not run", "");
            continue;
        };
        let ratio = match baseline.map(|baseline| (baseline, typical_nanoseconds(baseline))) {
            None => "(baseline)".to_owned(),
            Some((baseline, Some(base))) => format!("{:.2}× {}", time / base, baseline.trim_start_matches("raw/")),
            Some((_, None)) => "baseline not run".to_owned(),
        };
        println!("| {label:<42} | {:>10} | {ratio:>22} |", format_time(time));
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .output_directory(&output_directory())
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    print_table();
}
