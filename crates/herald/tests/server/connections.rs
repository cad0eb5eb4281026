//! Connections as a hostile or careless client holds them, over raw TCP:
//! silent, half-sent, idle, too many, stalled bodies and requests hyper
//! cannot parse. Timeouts are set short in the test configuration.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

const SHORT: Duration = Duration::from_millis(300);
/// Far longer than any timeout under test: reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(5);

async fn spawn_with_short_timeouts(max_connections: usize) -> TestApp {
    TestApp::spawn_with(|config| {
        config.http.header_read_timeout = SHORT;
        config.http.request_body_timeout = SHORT;
        config.http.request_timeout = Duration::from_secs(1);
        config.http.idle_timeout = Duration::from_secs(2);
        config.http.max_connections = max_connections;
    })
    .await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.running().addr).await.expect("connect")
}

/// Whether the server closes `stream` within [`PATIENCE`] (reading and
/// discarding whatever it sends first).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let outcome = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    outcome.is_ok()
}

/// Reads one response: its status and JSON body (`Null` if none).
async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    return (head, data[end + 4..end + 4 + length].to_vec());
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => panic!("closed before a full response: {}", String::from_utf8_lossy(&data)),
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let (head, body) = read.expect("a response in time");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn silent_and_half_sent_connections_are_closed() {
    let app = spawn_with_short_timeouts(64).await;
    let mut silent = connect(&app).await;
    assert!(closed_by_server(&mut silent).await, "a silent connection is closed");
    let mut half_sent = connect(&app).await;
    half_sent
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(&mut half_sent).await, "a half-sent head is cut off");
    let mut trickle = connect(&app).await;
    trickle.write_all(b"PRI * HTTP/2").await.expect("write");
    assert!(
        closed_by_server(&mut trickle).await,
        "a connection that never finishes showing its protocol is cut off"
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let app = TestApp::spawn_with(|config| {
        // Long header timeout: only the idle timeout can close it.
        config.http.header_read_timeout = Duration::from_secs(30);
        config.http.request_body_timeout = Duration::from_millis(100);
        config.http.request_timeout = Duration::from_millis(200);
        config.http.idle_timeout = SHORT;
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, _) = read_response(&mut stream).await;
    assert_eq!(status, 200);
    assert!(
        closed_by_server(&mut stream).await,
        "an idle kept-alive connection is closed"
    );
}

#[tokio::test]
async fn open_connections_are_capped() {
    let app = TestApp::spawn_with(|config| {
        config.http.header_read_timeout = Duration::from_secs(30);
        config.http.max_connections = 2;
    })
    .await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
        holders.push(stream);
    }
    let mut waiting = connect(&app).await;
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(SHORT, waiting.peek(&mut byte)).await;
    assert!(early.is_err(), "a third connection is not served while two are open");
    drop(holders.pop());
    let (status, _) = read_response(&mut waiting).await;
    assert_eq!(status, 200, "it is served once a slot frees");
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408() {
    let app = spawn_with_short_timeouts(64).await;
    let project = app.project("acme").await;
    let mut stream = connect(&app).await;
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{}}",
        project.key
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let app = spawn_with_short_timeouts(64).await;
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases = [
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed_request"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
            "uri_too_long",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let mut stream = connect(&app).await;
        stream.write_all(&request).await.expect("write");
        let (got, body) = read_response(&mut stream).await;
        let start = String::from_utf8_lossy(&request[..request.len().min(30)]).into_owned();
        assert_eq!(got, status, "{start}: {body}");
        assert_eq!(body["error"]["code"], code, "{start}: {body}");
    }
}
