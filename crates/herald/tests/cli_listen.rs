//! `herald listen`, run as the built binary on port 0 and driven over raw
//! TCP from 127.0.0.1.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use herald_signature::{
    Ed25519SecretKey, HmacKey, JwkSet, JwtMessage, JwtSigner, JwtSigningKey, KeyId, Signer, SigningKey,
};

const BODY: &str = r#"{"type":"batch.succeeded","version":"v1","data":{"id":"batch_123"}}"#;
const AUDIENCE: &str = "http://127.0.0.1/hooks";

/// A running `herald listen`, killed when dropped.
struct Listener {
    child: Child,
    port: u16,
    /// Lines of its stdout, read by a background thread.
    lines: Receiver<String>,
}

impl Listener {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("listen")
            .args(["--port", "0"])
            .args(args)
            .env_remove("HERALD_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start herald listen: {e}"));
        let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout is piped"));
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no output from listen: {e}"));
        let port = first
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        assert_ne!(port, 0, "the actual port is printed");
        Self { child, port, lines }
    }

    /// Sends a POST with `headers` and `body`; returns the status and the response body.
    fn post(&self, headers: &[(String, String)], body: &str) -> (u16, String) {
        let response = self.post_raw(headers, body);
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// Sends a POST and returns the whole response, head included.
    fn post_raw(&self, headers: &[(String, String)], body: &str) -> String {
        let mut request = format!(
            "POST /hooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e}"));
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("send: {e}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .unwrap_or_else(|e| panic!("receive: {e}"));
        response
    }

    /// Waits for an output line containing every one of `parts`.
    fn expect_line(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if parts.iter().all(|part| line.contains(part)) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no line with {parts:?}; saw {seen:#?}")
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

fn signed(key: &HmacKey, id: &str, body: &str) -> Vec<(String, String)> {
    let signer = Signer::new(vec![SigningKey::Hmac(key.clone())]).unwrap_or_else(|e| panic!("{e}"));
    let headers = signer
        .sign_headers(id, now(), body.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    headers
        .to_pairs()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

#[test]
fn verified_requests_are_accepted_printed_and_deduplicated() {
    let key = HmacKey::generate();
    let listener = Listener::start(&["--secret", &key.expose_secret()]);
    let headers = signed(&key, "msg_listen_1", BODY);
    assert_eq!(
        listener.post(&headers, BODY),
        (200, r#"{"status":"accepted"}"#.to_owned())
    );
    let line = listener.expect_line(&[
        "batch.succeeded",
        "msg_listen_1",
        "valid (v1 entry 1 matched --secret #1)",
        "-> 200 OK",
    ]);
    assert!(line.ends_with("-> 200 OK"), "{line}");
    listener.expect_line(&["\"type\": \"batch.succeeded\""]);
    assert_eq!(
        listener.post(&headers, BODY),
        (200, r#"{"status":"duplicate"}"#.to_owned()),
        "a replay is acknowledged, not processed"
    );
    listener.expect_line(&["msg_listen_1", "duplicate"]);
}

#[test]
fn invalid_requests_get_4xx_with_the_reason() {
    let key = HmacKey::generate();
    let listener = Listener::start(&["--secret", &key.expose_secret()]);
    let mut forged = signed(&HmacKey::generate(), "msg_forged", BODY);
    let (status, body) = listener.post(&forged, BODY);
    assert_eq!(status, 401);
    assert!(body.contains("no matching signature"), "{body}");
    listener.expect_line(&["msg_forged", "invalid: no matching signature", "-> 401"]);

    let tampered = signed(&key, "msg_tampered", BODY);
    assert_eq!(listener.post(&tampered, r#"{"type":"batch.failed"}"#).0, 401);

    forged.retain(|(name, _)| name != "webhook-id");
    let (status, body) = listener.post(&forged, BODY);
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"missing header webhook-id"}"#)
    );

    let mut stale = signed(&key, "msg_stale", BODY);
    stale[1].1 = (now() - 301).to_string();
    let (status, body) = listener.post(&stale, BODY);
    assert_eq!(status, 401);
    assert!(body.contains("too old"), "{body}");
}

#[test]
fn status_flag_simulates_a_failing_receiver_and_retries_are_not_replays() {
    let key = HmacKey::generate();
    let listener = Listener::start(&["--secret", &key.expose_secret(), "--status", "503"]);
    let headers = signed(&key, "msg_retry", BODY);
    assert_eq!(listener.post(&headers, BODY).0, 503);
    listener.expect_line(&["batch.succeeded", "msg_retry", "simulated failure", "-> 503"]);
    // The sender retries the same message: still verified, still 503, not a replay.
    assert_eq!(listener.post(&headers, BODY).0, 503);
    // Invalid requests are still refused as invalid.
    assert_eq!(listener.post(&signed(&HmacKey::generate(), "msg_x", BODY), BODY).0, 401);
}

#[test]
fn bodiless_statuses_are_sent_without_a_body() {
    let key = HmacKey::generate();
    let listener = Listener::start(&["--secret", &key.expose_secret(), "--status", "204"]);
    let response = listener.post_raw(&signed(&key, "msg_204", BODY), BODY);
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    let head = response.to_ascii_lowercase();
    assert!(
        !head.contains("content-length: 2"),
        "a 204 announces no body: {response}"
    );
    assert!(response.ends_with("\r\n\r\n"), "{response:?}");
}

#[test]
fn fail_rate_fails_some_valid_requests() {
    let key = HmacKey::generate();
    let listener = Listener::start(&["--secret", &key.expose_secret(), "--fail-rate", "0.3"]);
    let statuses: Vec<u16> = (0..60)
        .map(|i| listener.post(&signed(&key, &format!("msg_rate_{i}"), BODY), BODY).0)
        .collect();
    let failures = statuses.iter().filter(|&&status| status == 500).count();
    let successes = statuses.iter().filter(|&&status| status == 200).count();
    assert_eq!(failures + successes, 60, "{statuses:?}");
    // Binomial(60, 0.3): mean 18, standard deviation 3.5; these bounds are 4 deviations out.
    assert!((4..=32).contains(&failures), "{failures} failures of 60: {statuses:?}");
}

#[test]
fn jwt_signatures_verify_against_a_jwks() {
    let signer = JwtSigner::new(
        KeyId::parse("ed-1").unwrap_or_else(|e| panic!("{e}")),
        JwtSigningKey::Ed25519(Ed25519SecretKey::generate()),
        "https://herald.example",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let jwks = JwkSet::new(vec![(signer.kid().clone(), signer.public_key())]).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_json()).unwrap_or_else(|e| panic!("{e}"));
    let listener = Listener::start(&["--jwks", &path.to_string_lossy(), "--audience", AUDIENCE]);
    let message = JwtMessage {
        audience: AUDIENCE,
        msg_id: "msg_jwt",
        issued_at: now(),
        body: BODY.as_bytes(),
    };
    let token = signer.sign(&message).unwrap_or_else(|e| panic!("{e}"));
    let headers = vec![
        ("webhook-id".to_owned(), "msg_jwt".to_owned()),
        ("webhook-timestamp".to_owned(), now().to_string()),
        ("webhook-signature".to_owned(), token),
    ];
    assert_eq!(listener.post(&headers, BODY).0, 200);
    listener.expect_line(&["msg_jwt", "JWT (EdDSA) verified with JWKS kid ed-1"]);
    assert_eq!(
        listener.post(&headers, r#"{"type":"other"}"#).0,
        401,
        "the JWT is bound to the body"
    );
}

#[test]
fn ctrl_c_stops_the_listener_cleanly() {
    let key = HmacKey::generate();
    let mut listener = Listener::start(&["--secret", &key.expose_secret()]);
    let pid = listener.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(sent.success());
    listener.expect_line(&["stopped"]);
    let status = listener.child.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}");
}
