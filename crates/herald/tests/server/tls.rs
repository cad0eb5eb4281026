//! HTTPS endpoints: certificate checks, HTTP/2 over ALPN, a private CA.

use reqwest::Method;
use serde_json::json;

use crate::support::TestApp;
use crate::support::tls::TlsReceiver;

#[tokio::test]
async fn https_endpoints_get_http2_when_their_certificate_is_trusted() {
    let receiver = TlsReceiver::start().await;
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &receiver.ca_pem).unwrap();
    let app = TestApp::spawn_with(|config| config.delivery.ca_file = Some(ca_file.path().to_path_buf())).await;
    let project = app.project("acme").await;
    app.webhook(&project, &format!("https://127.0.0.1:{}/hook", receiver.port), &["*"])
        .await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let event = app.event(&project, &event_id).await;
    assert_eq!(event["deliveries"][0]["state"], "succeeded", "{event}");
    assert_eq!(*receiver.versions.lock().unwrap(), [hyper::Version::HTTP_2]);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_failure() {
    let receiver = TlsReceiver::start().await;
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    app.webhook(&project, &format!("https://127.0.0.1:{}/hook", receiver.port), &["*"])
        .await;
    let event_id = app.publish(&project, "batch.succeeded", json!({})).await;
    assert_eq!(app.deliver_due().await, 1);
    let event = app.event(&project, &event_id).await;
    let attempt = &event["deliveries"][0]["last_attempt"];
    assert_eq!(attempt["error_kind"], "tls", "{event}");
    assert!(receiver.versions.lock().unwrap().is_empty());
    assert_eq!(app.call(Method::GET, "/readyz", None, None).await.0, 200);
}
