//! `herald keygen`, `herald sign` and `herald verify`, run as the built
//! binary. Verification cases are data-driven through one `check` helper.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use herald_signature::{
    Ed25519PublicKey, Ed25519SecretKey, HmacKey, JwkSet, JwtMessage, JwtSigner, JwtSigningKey, KeyId, PublicKey,
};
use serde_json::Value;

const BODY: &[u8] = br#"{"type":"batch.succeeded","data":{"id":"batch_123"}}"#;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn herald(args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env_remove("HERALD_WEBHOOK_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run herald: {e}"));
    if let Some(mut input) = child.stdin.take() {
        // A command that fails before reading its input closes the pipe:
        // that is its answer, not a test failure.
        match input.write_all(stdin) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The value after `label: ` on the line that starts with it.
fn field(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(": "))
        .unwrap_or_else(|| panic!("no `{label}:` line in {output:?}"))
        .to_owned()
}

fn new_hmac_secret() -> String {
    field(&herald(&["keygen"], b"").stdout, "secret")
}

/// `(secret_key, public_key, jwk)` from `keygen --kind ed25519 --json`.
fn new_ed25519_key(kid: &str) -> (String, String, Value) {
    let run = herald(&["keygen", "--kind", "ed25519", "--json", "--kid", kid], b"");
    let json: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let text = |name: &str| json[name].as_str().unwrap_or_default().to_owned();
    (text("secret_key"), text("public_key"), json["jwk"].clone())
}

/// `(timestamp, signature)` printed by `herald sign`.
fn sign(secrets: &[&str], id: &str, timestamp: Option<&str>, body: &[u8]) -> (String, String) {
    let mut args = vec!["sign", "--id", id];
    for secret in secrets {
        args.extend(["--secret", secret]);
    }
    if let Some(timestamp) = timestamp {
        args.extend(["--timestamp", timestamp]);
    }
    args.push("-");
    let run = herald(&args, body);
    assert_eq!(run.code, 0, "sign failed: {}", run.stderr);
    assert_eq!(field(&run.stdout, "webhook-id"), id);
    (
        field(&run.stdout, "webhook-timestamp"),
        field(&run.stdout, "webhook-signature"),
    )
}

#[test]
fn keygen_output_parses() {
    let hmac = new_hmac_secret();
    assert_eq!(HmacKey::parse(&hmac).map(|key| key.len()).ok(), Some(32));
    let json: Value = serde_json::from_str(&herald(&["keygen", "--json"], b"").stdout).unwrap_or_default();
    assert_eq!(json["kind"], "hmac");
    assert!(HmacKey::parse(json["secret"].as_str().unwrap_or_default()).is_ok());

    let text = herald(&["keygen", "--kind", "ed25519"], b"").stdout;
    let secret = Ed25519SecretKey::parse(&field(&text, "secret_key")).unwrap_or_else(|e| panic!("{e}"));
    let public = Ed25519PublicKey::parse(&field(&text, "public_key")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(secret.public_key(), public);
    let jwk: Value = serde_json::from_str(&field(&text, "jwk")).unwrap_or_default();
    assert_eq!(
        jwk["kid"].as_str(),
        Some(PublicKey::Ed25519(public).thumbprint().as_str()),
        "default kid is the thumbprint"
    );

    let (secret, public, jwk) = new_ed25519_key("k1");
    let jwks = JwkSet::from_json(&serde_json::json!({ "keys": [jwk] }).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let public = Ed25519PublicKey::parse(&public).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwks.get("k1"), Some(&PublicKey::Ed25519(public)));
    assert_eq!(
        Ed25519SecretKey::parse(&secret).map(|s| s.public_key()).ok(),
        Some(public)
    );
}

#[test]
fn sign_then_verify_exits_zero_and_a_tampered_body_exits_one() {
    let secret = new_hmac_secret();
    let (timestamp, signature) = sign(&[&secret], "msg_1", None, BODY);
    let verify = |body: &[u8]| {
        herald(
            &[
                "verify",
                "--secret",
                &secret,
                "--id",
                "msg_1",
                "--timestamp",
                &timestamp,
                "--signature",
                &signature,
                "-",
            ],
            body,
        )
    };
    let valid = verify(BODY);
    assert_eq!(valid.code, 0, "{} {}", valid.stdout, valid.stderr);
    assert_eq!(
        valid.stdout.trim(),
        "valid: v1 entry 1 matched --secret #1 (webhook-id msg_1)"
    );
    let tampered = verify(br#"{"type":"batch.succeeded","data":{"id":"batch_124"}}"#);
    assert_eq!(tampered.code, 1);
    assert!(
        tampered.stdout.starts_with("invalid: no matching signature"),
        "{}",
        tampered.stdout
    );
}

#[test]
fn sign_refuses_bad_input_with_exit_two() {
    let secret = new_hmac_secret();
    let cases: [(&[&str], &str); 4] = [
        (
            &["sign", "--secret", &secret, "--id", "msg.1", "-"],
            "webhook-id contains '.'",
        ),
        (
            &["sign", "--secret", "whsec_!!!!", "--id", "msg_1", "-"],
            "--secret #1: HMAC secret (whsec_) is not canonical",
        ),
        (
            &["sign", "--secret", &secret, "--id", "msg_1", "--timestamp=-5", "-"],
            "negative",
        ),
        (
            &["sign", "--secret", &secret, "--id", "msg_1", "/nonexistent/body.json"],
            "reading the body",
        ),
    ];
    for (args, reason) in cases {
        let run = herald(args, BODY);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(reason), "{args:?}: {}", run.stderr);
    }
}

/// One `herald verify` run: its arguments and what it must answer.
struct VerifyCase<'a> {
    what: &'a str,
    args: Vec<String>,
    body: &'a [u8],
    code: i32,
    output: &'a str,
}

fn check(case: &VerifyCase<'_>) {
    let mut args = vec!["verify".to_owned()];
    args.extend(case.args.iter().cloned());
    args.push("-".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = herald(&args, case.body);
    assert_eq!(
        run.code, case.code,
        "{}: stdout {:?} stderr {:?}",
        case.what, run.stdout, run.stderr
    );
    let printed = format!("{}{}", run.stdout, run.stderr);
    assert!(
        printed.contains(case.output),
        "{}: expected {:?} in {printed:?}",
        case.what,
        case.output
    );
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

#[test]
fn verify_reports_each_outcome_precisely() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let current = new_hmac_secret();
    let previous = new_hmac_secret();
    let (ed_secret, ed_public, jwk) = new_ed25519_key("ed-1");
    let jwks_path = dir.path().join("jwks.json");
    std::fs::write(&jwks_path, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap_or_else(|e| panic!("{e}"));
    let jwks_path = jwks_path.to_string_lossy().into_owned();
    let (ts, rotation) = sign(&[&current, &previous, &ed_secret], "msg_2", None, BODY);
    let (old_ts, old_signature) = sign(&[&current], "msg_3", Some("1614265330"), BODY);
    let message = |extra: &[&str]| {
        let mut args = strings(&["--id", "msg_2", "--timestamp", &ts, "--signature", &rotation]);
        args.extend(strings(extra));
        args
    };

    let cases = [
        VerifyCase {
            what: "second entry",
            args: message(&["--secret", &previous]),
            body: BODY,
            code: 0,
            output: "valid: v1 entry 2 matched --secret #1",
        },
        VerifyCase {
            what: "v1a via whpk_",
            args: message(&["--public-key", &ed_public]),
            body: BODY,
            code: 0,
            output: "valid: v1a entry 3 matched --public-key #1",
        },
        VerifyCase {
            what: "v1a via whsk_",
            args: message(&["--secret", &ed_secret]),
            body: BODY,
            code: 0,
            output: "valid: v1a entry 3 matched --secret #1",
        },
        VerifyCase {
            what: "v1a via JWKS file",
            args: message(&["--jwks", &jwks_path]),
            body: BODY,
            code: 0,
            output: "valid: v1a entry 3 matched JWKS kid ed-1",
        },
        VerifyCase {
            what: "untrusted key",
            args: message(&["--secret", &new_hmac_secret()]),
            body: BODY,
            code: 1,
            output: "invalid: no matching signature",
        },
        VerifyCase {
            what: "other body",
            args: message(&["--public-key", &ed_public]),
            body: b"{}",
            code: 1,
            output: "invalid: no matching signature",
        },
        VerifyCase {
            what: "too old",
            args: strings(&[
                "--secret",
                &current,
                "--id",
                "msg_3",
                "--timestamp",
                &old_ts,
                "--signature",
                &old_signature,
            ]),
            body: BODY,
            code: 1,
            output: "invalid: webhook-timestamp 1614265330 is too old",
        },
        VerifyCase {
            what: "as of --now",
            args: strings(&[
                "--secret",
                &current,
                "--id",
                "msg_3",
                "--timestamp",
                &old_ts,
                "--signature",
                &old_signature,
                "--now",
                "1614265400",
            ]),
            body: BODY,
            code: 0,
            output: "valid",
        },
        VerifyCase {
            what: "invalid timestamp",
            args: strings(&[
                "--secret",
                &current,
                "--id",
                "msg_2",
                "--timestamp",
                "+12",
                "--signature",
                &rotation,
            ]),
            body: BODY,
            code: 1,
            output: "invalid webhook-timestamp",
        },
        VerifyCase {
            what: "bad key",
            args: message(&["--secret", "whsec_c2hvcnQ="]),
            body: BODY,
            code: 2,
            output: "--secret #1: HMAC secret (whsec_) is too short: 5 bytes, at least 24 required",
        },
        VerifyCase {
            what: "no --timestamp",
            args: strings(&["--secret", &current, "--id", "msg_2", "--signature", &rotation]),
            body: BODY,
            code: 2,
            output: "--timestamp is required",
        },
        VerifyCase {
            what: "missing JWKS file",
            args: message(&["--jwks", "/nonexistent/jwks.json"]),
            body: BODY,
            code: 2,
            output: "reading --jwks",
        },
        VerifyCase {
            what: "no key flag",
            args: message(&[]),
            body: BODY,
            code: 2,
            output: "required",
        },
    ];
    for case in &cases {
        check(case);
    }
}

const AUDIENCE: &str = "https://receiver.example/hooks";

fn jwt_fixture() -> (String, String) {
    let signer = JwtSigner::new(
        KeyId::parse("ed-jwt").unwrap_or_else(|e| panic!("{e}")),
        JwtSigningKey::Ed25519(Ed25519SecretKey::generate()),
        "https://herald.example",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let jwks = JwkSet::new(vec![(signer.kid().clone(), signer.public_key())]).unwrap_or_else(|e| panic!("{e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let token = signer
        .sign(&JwtMessage {
            audience: AUDIENCE,
            msg_id: "msg_jwt",
            issued_at: i64::try_from(now).unwrap_or(0),
            body: BODY,
        })
        .unwrap_or_else(|e| panic!("{e}"));
    (token, jwks.to_json())
}

#[test]
fn verify_accepts_jwt_signatures_with_a_jwks_file_or_url() {
    let (token, jwks) = jwt_fixture();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, &jwks).unwrap_or_else(|e| panic!("{e}"));
    let path = path.to_string_lossy().into_owned();
    let url = serve_once(jwks.into_bytes());
    let jwt = |extra: &[&str]| {
        let mut args = strings(&["--id", "msg_jwt", "--signature", &token]);
        args.extend(strings(extra));
        args
    };
    let cases = [
        VerifyCase {
            what: "JWT, JWKS file",
            args: jwt(&["--jwks", &path, "--audience", AUDIENCE]),
            body: BODY,
            code: 0,
            output: "valid: JWT (EdDSA) verified with JWKS kid ed-jwt",
        },
        VerifyCase {
            what: "JWT, JWKS URL",
            args: jwt(&["--jwks", &url, "--audience", AUDIENCE]),
            body: BODY,
            code: 0,
            output: "valid: JWT (EdDSA)",
        },
        VerifyCase {
            what: "JWT, other body",
            args: jwt(&["--jwks", &path, "--audience", AUDIENCE]),
            body: b"{}",
            code: 1,
            output: "does not match the SHA-256 of the received body",
        },
        VerifyCase {
            what: "JWT, other audience",
            args: jwt(&["--jwks", &path, "--audience", "https://other.example/"]),
            body: BODY,
            code: 1,
            output: "JWT audience",
        },
        VerifyCase {
            what: "JWT, no --audience",
            args: jwt(&["--jwks", &path]),
            body: BODY,
            code: 2,
            output: "needs --audience",
        },
        VerifyCase {
            what: "JWT, only a secret",
            args: jwt(&["--secret", &new_hmac_secret()]),
            body: BODY,
            code: 2,
            output: "needs --jwks",
        },
        VerifyCase {
            what: "JWKS URL refused",
            args: jwt(&["--jwks", "http://127.0.0.1:9/jwks.json", "--audience", AUDIENCE]),
            body: BODY,
            code: 2,
            output: "fetching --jwks",
        },
    ];
    for case in &cases {
        check(case);
    }
}

/// Serves `body` to one HTTP request on 127.0.0.1 and returns the URL.
fn serve_once(body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|read| read > 2) {
            line.clear();
        }
        let mut stream = reader.into_inner();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
        let _ = stream.read(&mut [0u8; 1]);
    });
    format!("http://{address}/.well-known/jwks.json")
}

#[test]
fn body_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("body.json");
    std::fs::write(&path, BODY).unwrap_or_else(|e| panic!("{e}"));
    let path = path.to_string_lossy().into_owned();
    let secret = new_hmac_secret();
    let signed = herald(
        &[
            "sign",
            "--secret",
            &secret,
            "--id",
            "msg_f",
            "--timestamp",
            "1614265330",
            &path,
        ],
        b"",
    );
    let signature = field(&signed.stdout, "webhook-signature");
    let args = [
        "verify",
        "--secret",
        &secret,
        "--id",
        "msg_f",
        "--timestamp",
        "1614265330",
        "--signature",
        &signature,
        "--now",
        "1614265330",
        &path,
    ];
    assert_eq!(herald(&args, b"").code, 0);
    assert!(Path::new(&path).exists());
}
