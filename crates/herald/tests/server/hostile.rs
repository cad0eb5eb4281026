//! Hostile input, table-driven: each case is a request and the status and
//! error code it must get. Every error answer must be the JSON error body,
//! small whatever was sent. A new endpoint gets the same treatment by
//! adding rows to `cases`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, TestApp};

#[derive(Clone, Copy)]
enum Key {
    None,
    Admin,
    Project,
}

enum Body {
    None,
    Json(Value),
    Raw { content_type: &'static str, bytes: Vec<u8> },
}

struct Case {
    name: &'static str,
    method: Method,
    /// `{project}` and `{webhook}` are replaced by real ids.
    path: String,
    key: Key,
    headers: Vec<(&'static str, &'static str)>,
    body: Body,
    status: u16,
    code: &'static str,
    /// The field the error must name, when it names one.
    field: Option<&'static str>,
}

fn case(name: &'static str, method: Method, path: impl Into<String>, key: Key, body: Body) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        key,
        headers: Vec::new(),
        body,
        status: 0,
        code: "",
        field: None,
    }
}

impl Case {
    fn expect(mut self, status: u16, code: &'static str, field: Option<&'static str>) -> Self {
        self.status = status;
        self.code = code;
        self.field = field;
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }
}

fn event(data: &str) -> Body {
    Body::Raw {
        content_type: "application/json",
        bytes: format!(r#"{{"type":"job.done","data":{data}}}"#).into_bytes(),
    }
}

fn webhook_to(uri: &str) -> Body {
    Body::Json(json!({ "uri": uri, "subscribed_events": ["*"] }))
}

fn nested(depth: usize) -> String {
    format!("{{\"a\":{}1{}}}", "[".repeat(depth - 1), "]".repeat(depth - 1))
}

fn cases() -> Vec<Case> {
    use Key::{Admin, Project};
    let huge_key = format!(r#"{{"type":"job.done","data":{{}},"{}":1}}"#, "k".repeat(1_000_000));
    vec![
        // Routing and the HTTP layer.
        case(
            "undecodable path",
            Method::GET,
            "/v1/webhooks/%ff%fe",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("path")),
        case("unknown endpoint", Method::GET, "/v1/nope", Project, Body::None).expect(404, "not_found", None),
        case("wrong method", Method::DELETE, "/v1/events", Project, Body::None).expect(405, "method_not_allowed", None),
        case("no key", Method::GET, "/v1/webhooks", Key::None, Body::None).expect(401, "unauthenticated", None),
        case(
            "admin key on a project endpoint",
            Method::GET,
            "/v1/webhooks",
            Admin,
            Body::None,
        )
        .expect(403, "permission_denied", None),
        case(
            "project key on an admin endpoint",
            Method::GET,
            "/v1/projects",
            Project,
            Body::None,
        )
        .expect(403, "permission_denied", None),
        // Bodies.
        case("gzip body", Method::POST, "/v1/events", Project, event("{}"))
            .header("content-encoding", "gzip")
            .expect(415, "unsupported_media_type", None),
        case(
            "text body",
            Method::POST,
            "/v1/events",
            Project,
            Body::Raw {
                content_type: "text/plain",
                bytes: b"{}".to_vec(),
            },
        )
        .expect(415, "unsupported_media_type", None),
        case(
            "not JSON",
            Method::POST,
            "/v1/events",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: b"{not json".to_vec(),
            },
        )
        .expect(400, "invalid_json", None),
        case(
            "empty body",
            Method::POST,
            "/v1/events",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: Vec::new(),
            },
        )
        .expect(400, "invalid_json", None),
        case(
            "a 1 MB unknown key is not echoed",
            Method::POST,
            "/v1/events",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: huge_key.into_bytes(),
            },
        )
        .expect(400, "invalid_argument", None),
        case(
            "body over limits.max_request_bytes",
            Method::POST,
            "/v1/events",
            Project,
            event(&format!(r#"{{"x":"{}"}}"#, "a".repeat(3_000_000))),
        )
        .expect(413, "payload_too_large", None),
        // Event data.
        case(
            "data nested 128 deep is fine",
            Method::POST,
            "/v1/events",
            Project,
            event(&nested(128)),
        )
        .expect(202, "", None),
        case(
            "data nested 129 deep",
            Method::POST,
            "/v1/events",
            Project,
            event(&nested(129)),
        )
        .expect(400, "invalid_argument", None),
        case(
            "data nested 100,000 deep",
            Method::POST,
            "/v1/events",
            Project,
            event(&nested(100_000)),
        )
        .expect(400, "invalid_argument", None),
        case(
            "lone surrogate",
            Method::POST,
            "/v1/events",
            Project,
            event(r#"{"x":["\udc00"]}"#),
        )
        .expect(400, "invalid_argument", Some("data.x[0]")),
        case("data not an object", Method::POST, "/v1/events", Project, event("[1]")).expect(
            400,
            "invalid_argument",
            Some("data"),
        ),
        case(
            "empty batch",
            Method::POST,
            "/v1/events:batchCreate",
            Project,
            Body::Json(json!({ "events": [] })),
        )
        .expect(400, "invalid_argument", Some("events")),
        case("bad idempotency key", Method::POST, "/v1/events", Project, event("{}"))
            .header("idempotency-key", "has space")
            .expect(400, "invalid_argument", Some("Idempotency-Key")),
        case("unknown event", Method::GET, "/v1/events/evt_nope", Project, Body::None).expect(404, "not_found", None),
        // Webhook URIs.
        case(
            "CR LF in a URI",
            Method::POST,
            "/v1/webhooks",
            Project,
            webhook_to("http://127.0.0.1:19100/\r\nX-Injected: 1"),
        )
        .expect(400, "invalid_argument", Some("uri")),
        case(
            "NUL in a URI",
            Method::POST,
            "/v1/webhooks",
            Project,
            webhook_to("http://127.0.0.1:19100/\0"),
        )
        .expect(400, "invalid_argument", Some("uri")),
        case(
            "400-character host",
            Method::POST,
            "/v1/webhooks",
            Project,
            webhook_to(&format!("http://{}example.com/", "abcdefgh.".repeat(44))),
        )
        .expect(400, "invalid_argument", Some("uri")),
        case(
            "64-character label",
            Method::POST,
            "/v1/webhooks",
            Project,
            webhook_to(&format!("http://{}.example.com/", "a".repeat(64))),
        )
        .expect(400, "invalid_argument", Some("uri")),
        case(
            "private address",
            Method::POST,
            "/v1/webhooks",
            Project,
            webhook_to("http://10.0.0.1/"),
        )
        .expect(400, "invalid_argument", Some("uri")),
        // PATCH.
        case(
            "PATCH name null",
            Method::PATCH,
            "/v1/webhooks/{webhook}",
            Project,
            Body::Json(json!({ "name": null })),
        )
        .expect(400, "invalid_argument", Some("name")),
        case(
            "PATCH empty update_mask",
            Method::PATCH,
            "/v1/webhooks/{webhook}?update_mask=",
            Project,
            Body::Json(json!({ "name": "x" })),
        )
        .expect(400, "invalid_argument", Some("update_mask")),
        case(
            "PATCH unknown update_mask",
            Method::PATCH,
            "/v1/webhooks/{webhook}?update_mask=secret",
            Project,
            Body::Json(json!({ "name": "x" })),
        )
        .expect(400, "invalid_argument", Some("update_mask")),
        case(
            "PATCH nothing",
            Method::PATCH,
            "/v1/webhooks/{webhook}",
            Project,
            Body::Json(json!({})),
        )
        .expect(400, "invalid_argument", Some("update_mask")),
        case(
            "PATCH unknown query parameter",
            Method::PATCH,
            "/v1/webhooks/{webhook}?mask=name",
            Project,
            Body::Json(json!({ "name": "x" })),
        )
        .expect(400, "invalid_argument", Some("mask")),
        // Listings.
        case(
            "api keys: unknown parameter",
            Method::GET,
            "/v1/projects/{project}/api_keys?bogus=1",
            Admin,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("bogus")),
        case(
            "api keys: page_size 0",
            Method::GET,
            "/v1/projects/{project}/api_keys?page_size=0",
            Admin,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("page_size")),
        case(
            "webhooks: page_size too large",
            Method::GET,
            "/v1/webhooks?page_size=1000",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("page_size")),
        case(
            "webhooks: bad page token",
            Method::GET,
            "/v1/webhooks?page_token=%%%",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("page_token")),
        case(
            "deliveries: bad state",
            Method::GET,
            "/v1/deliveries?state=done",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("state")),
        case(
            "deliveries: bad since",
            Method::GET,
            "/v1/deliveries?since=yesterday",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("since")),
        case(
            "deliveries: until before since",
            Method::GET,
            "/v1/deliveries?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("until")),
        case(
            "deliveries: bad webhook_id",
            Method::GET,
            "/v1/deliveries?webhook_id=nope",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("webhook_id")),
        case(
            "deliveries: bad event_id",
            Method::GET,
            "/v1/deliveries?event_id=nope",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("event_id")),
        case(
            "deliveries: unknown parameter",
            Method::GET,
            "/v1/deliveries?sort=asc",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("sort")),
        case(
            "deliveries: page token that is no id",
            Method::GET,
            "/v1/deliveries?page_token=eA",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("page_token")),
        case(
            "replay: not JSON",
            Method::POST,
            "/v1/webhooks/{webhook}:replay",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: b"{since".to_vec(),
            },
        )
        .expect(400, "invalid_json", None),
        case(
            "replay: no since",
            Method::POST,
            "/v1/webhooks/{webhook}:replay",
            Project,
            Body::Json(json!({ "state": "failed" })),
        )
        .expect(400, "invalid_argument", Some("since")),
        case(
            "replay: unknown field",
            Method::POST,
            "/v1/webhooks/{webhook}:replay",
            Project,
            Body::Json(json!({ "since": "2026-01-01T00:00:00Z", "cursor": 1 })),
        )
        .expect(400, "invalid_argument", None),
        case(
            "replay: bad state",
            Method::POST,
            "/v1/webhooks/{webhook}:replay",
            Project,
            Body::Json(json!({ "since": "2026-01-01T00:00:00Z", "state": "pending" })),
        )
        .expect(400, "invalid_argument", Some("state")),
        case(
            "replay: unknown webhook",
            Method::POST,
            "/v1/webhooks/wh_nope:replay",
            Project,
            Body::Json(json!({ "since": "2026-01-01T00:00:00Z" })),
        )
        .expect(404, "not_found", None),
        case(
            "replays: unknown id",
            Method::GET,
            "/v1/replays/rpl_nope",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "replays: page token that is no id",
            Method::GET,
            "/v1/replays?page_token=eA",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("page_token")),
        case("replays: admin key", Method::GET, "/v1/replays", Admin, Body::None).expect(
            403,
            "permission_denied",
            None,
        ),
        case(
            "stats: unknown webhook",
            Method::GET,
            "/v1/webhooks/wh_nope/stats",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "events: Herald's own type",
            Method::POST,
            "/v1/events",
            Project,
            Body::Json(json!({ "type": "delivery.exhausted", "data": {} })),
        )
        .expect(400, "invalid_argument", Some("type")),
        case(
            "deliveries: unknown id",
            Method::GET,
            "/v1/deliveries/dlv_nope",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "deliveries: redeliver unknown id",
            Method::POST,
            "/v1/deliveries/dlv_nope:redeliver",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "deliveries: unknown method",
            Method::POST,
            "/v1/deliveries/dlv_nope:explode",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "deliveries: POST without a method",
            Method::POST,
            "/v1/deliveries/dlv_nope",
            Project,
            Body::None,
        )
        .expect(405, "method_not_allowed", None),
        case(
            "webhooks: ping unknown webhook",
            Method::POST,
            "/v1/webhooks/wh_nope:ping",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "rotate: unknown webhook",
            Method::POST,
            "/v1/webhooks/wh_nope:rotateSigningSecret",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "rotate: unknown revocation behavior",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Project,
            Body::Json(json!({ "revocation_behavior": "revoke_previous_secrets_never" })),
        )
        .expect(400, "invalid_argument", Some("revocation_behavior")),
        case(
            "rotate: revocation behavior not a string",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Project,
            Body::Json(json!({ "revocation_behavior": ["x"] })),
        )
        .expect(400, "invalid_argument", Some("revocation_behavior")),
        case(
            "rotate: unknown field",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Project,
            Body::Json(json!({ "new_secret": "whsec_mine" })),
        )
        .expect(400, "invalid_argument", None),
        case(
            "rotate: not JSON",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: b"{revocation".to_vec(),
            },
        )
        .expect(400, "invalid_json", None),
        case(
            "rotate: not a JSON content type",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Project,
            Body::Raw {
                content_type: "text/plain",
                bytes: b"{}".to_vec(),
            },
        )
        .expect(415, "unsupported_media_type", None),
        case(
            "rotate: admin key",
            Method::POST,
            "/v1/webhooks/{webhook}:rotateSigningSecret",
            Admin,
            Body::None,
        )
        .expect(403, "permission_denied", None),
        case(
            "webhooks: unknown method",
            Method::POST,
            "/v1/webhooks/{webhook}:explode",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "webhooks: POST without a method",
            Method::POST,
            "/v1/webhooks/{webhook}",
            Project,
            Body::None,
        )
        .expect(405, "method_not_allowed", None),
        case(
            "deliveries: admin key",
            Method::GET,
            "/v1/deliveries",
            Admin,
            Body::None,
        )
        .expect(403, "permission_denied", None),
        case("goog key: empty", Method::GET, "/v1/webhooks", Key::None, Body::None)
            .header("x-goog-api-key", " ")
            .expect(401, "unauthenticated", None),
        case("goog key: unknown", Method::GET, "/v1/webhooks", Key::None, Body::None)
            .header("x-goog-api-key", "hrk_unknown")
            .expect(401, "unauthenticated", None),
        case("goog key and bearer", Method::GET, "/v1/webhooks", Project, Body::None)
            .header("x-goog-api-key", "hrk_unknown")
            .expect(401, "unauthenticated", None),
        case(
            "projects: unknown parameter",
            Method::GET,
            "/v1/projects?filter=x",
            Admin,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("filter")),
        // Operations, per-job webhooks, signing keys.
        case("operations: admin key", Method::GET, "/v1/operations", Admin, Body::None)
            .expect(403, "permission_denied", None),
        case(
            "operations: not an object",
            Method::POST,
            "/v1/operations",
            Project,
            Body::Json(json!([1])),
        )
        .expect(400, "invalid_argument", None),
        case(
            "operations: huge kind",
            Method::POST,
            "/v1/operations",
            Project,
            Body::Json(json!({ "kind": "k".repeat(100_000) })),
        )
        .expect(400, "invalid_argument", Some("kind")),
        case(
            "operations: metadata not an object",
            Method::POST,
            "/v1/operations",
            Project,
            Body::Json(json!({ "kind": "k", "metadata": "x" })),
        )
        .expect(400, "invalid_argument", Some("metadata")),
        case(
            "operations: webhook to a private address",
            Method::POST,
            "/v1/operations",
            Project,
            Body::Json(json!({ "kind": "k", "webhook_config": { "uris": ["http://169.254.169.254/"] } })),
        )
        .expect(400, "invalid_argument", Some("webhook_config.uris[0]")),
        case(
            "operations: eleven webhook uris",
            Method::POST,
            "/v1/operations",
            Project,
            Body::Json(json!({ "kind": "k", "webhook_config": { "uris": (0..11).map(|i| format!("http://127.0.0.1/{i}")).collect::<Vec<_>>() } })),
        )
        .expect(400, "invalid_argument", Some("webhook_config.uris")),
        case(
            "operations: unknown id",
            Method::POST,
            "/v1/operations/op_01ARZ3NDEKTSV4RRFFQ69G5FAV:start",
            Project,
            Body::Json(json!({ "worker": "w" })),
        )
        .expect(404, "not_found", None),
        case(
            "operations: wait on nonsense",
            Method::GET,
            "/v1/operations/xyz:wait?timeout=1s",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case("operations: PATCH", Method::PATCH, "/v1/operations", Project, Body::None)
            .expect(405, "method_not_allowed", None),
        case("signing keys: project key", Method::GET, "/v1/signing_keys", Project, Body::None)
            .expect(403, "permission_denied", None),
        case(
            "signing keys: bad overlap",
            Method::POST,
            "/v1/signing_keys:rotate",
            Admin,
            Body::Json(json!({ "overlap": "forever" })),
        )
        .expect(400, "invalid_argument", Some("overlap")),
        // Files and batches.
        case(
            "files: not multipart",
            Method::POST,
            "/v1/files",
            Project,
            Body::Json(json!({"purpose": "batch"})),
        )
        .expect(415, "unsupported_media_type", None),
        case(
            "files: no file field",
            Method::POST,
            "/v1/files",
            Project,
            multipart("--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b--\r\n"),
        )
        .expect(400, "invalid_argument", Some("file")),
        case(
            "files: unknown form field",
            Method::POST,
            "/v1/files",
            Project,
            multipart("--b\r\nContent-Disposition: form-data; name=\"colour\"\r\n\r\nred\r\n--b--\r\n"),
        )
        .expect(400, "invalid_argument", Some("colour")),
        case(
            "files: broken multipart",
            Method::POST,
            "/v1/files",
            Project,
            multipart("garbage"),
        )
        .expect(400, "malformed_request", None),
        case("files: admin key", Method::GET, "/v1/files", Admin, Body::None).expect(403, "permission_denied", None),
        case(
            "files: unknown id",
            Method::GET,
            "/v1/files/file_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "files: not an id",
            Method::GET,
            "/v1/files/nope/content",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "files: delete unknown",
            Method::DELETE,
            "/v1/files/nope",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "files: unknown parameter",
            Method::GET,
            "/v1/files?colour=red",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("colour")),
        case(
            "batches: not JSON",
            Method::POST,
            "/v1/batches",
            Project,
            Body::Raw {
                content_type: "application/json",
                bytes: b"{".to_vec(),
            },
        )
        .expect(400, "invalid_json", None),
        case(
            "batches: unknown field",
            Method::POST,
            "/v1/batches",
            Project,
            Body::Json(json!({"input_file_id": "x", "endpoint": "/v1/embeddings", "colour": 1})),
        )
        .expect(400, "invalid_argument", Some("colour")),
        case(
            "batches: limit 0",
            Method::GET,
            "/v1/batches?limit=0",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("limit")),
        case(
            "batches: bad cursor",
            Method::GET,
            "/v1/batches?after=file_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("after")),
        case(
            "batches: unknown id",
            Method::GET,
            "/v1/batches/batch_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "batches: cancel unknown",
            Method::POST,
            "/v1/batches/nope/cancel",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "batches: delete",
            Method::DELETE,
            "/v1/batches/nope",
            Project,
            Body::None,
        )
        .expect(405, "method_not_allowed", None),
        // Event types.
        case(
            "event types: bad name",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "no spaces allowed"})),
        )
        .expect(400, "invalid_argument", Some("name")),
        case(
            "event types: Herald's own name",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "webhook.ping"})),
        )
        .expect(400, "invalid_argument", Some("name")),
        case(
            "event types: schema not an object",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "schema": 5})),
        )
        .expect(400, "invalid_argument", Some("schema")),
        case(
            "event types: invalid schema",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "schema": {"type": "strnig"}})),
        )
        .expect(400, "invalid_argument", Some("schema")),
        case(
            "event types: huge schema",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "schema": {"description": "d".repeat(70_000)}})),
        )
        .expect(400, "invalid_argument", Some("schema")),
        case(
            "event types: long description",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "description": "d".repeat(1001)})),
        )
        .expect(400, "invalid_argument", Some("description")),
        case(
            "event types: control characters in the description",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "description": "a\u{1b}[31mb"})),
        )
        .expect(400, "invalid_argument", Some("description")),
        case(
            "event types: unknown field",
            Method::POST,
            "/v1/event_types",
            Project,
            Body::Json(json!({"name": "order.created", "version": 2})),
        )
        .expect(400, "invalid_argument", None),
        case(
            "event types: admin key",
            Method::GET,
            "/v1/event_types",
            Admin,
            Body::None,
        )
        .expect(403, "permission_denied", None),
        case(
            "event types: bad show_archived",
            Method::GET,
            "/v1/event_types?show_archived=maybe",
            Project,
            Body::None,
        )
        .expect(400, "invalid_argument", Some("show_archived")),
        case(
            "event types: unknown one",
            Method::GET,
            "/v1/event_types/order.nope",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "event types: impossible name in the path",
            Method::GET,
            "/v1/event_types/%20",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "event types: empty patch",
            Method::PATCH,
            "/v1/event_types/order.nope",
            Project,
            Body::Json(json!({})),
        )
        .expect(400, "invalid_argument", Some("update_mask")),
        case(
            "event types: bad update_mask",
            Method::PATCH,
            "/v1/event_types/order.nope?update_mask=name",
            Project,
            Body::Json(json!({"description": "x"})),
        )
        .expect(400, "invalid_argument", Some("update_mask")),
        case(
            "event types: masked field missing",
            Method::PATCH,
            "/v1/event_types/order.nope?update_mask=schema",
            Project,
            Body::Json(json!({"description": "x"})),
        )
        .expect(400, "invalid_argument", Some("schema")),
        case(
            "event types: patch unknown",
            Method::PATCH,
            "/v1/event_types/order.nope",
            Project,
            Body::Json(json!({"description": "x"})),
        )
        .expect(404, "not_found", None),
        case(
            "event types: delete unknown",
            Method::DELETE,
            "/v1/event_types/order.nope",
            Project,
            Body::None,
        )
        .expect(404, "not_found", None),
        case(
            "strict mode: project key",
            Method::PATCH,
            "/v1/projects/{project}",
            Project,
            Body::Json(json!({"strict_event_types": true})),
        )
        .expect(403, "permission_denied", None),
        case(
            "strict mode: not a boolean",
            Method::PATCH,
            "/v1/projects/{project}",
            Admin,
            Body::Json(json!({"strict_event_types": "yes"})),
        )
        .expect(400, "invalid_argument", None),
        case(
            "strict mode: unknown project",
            Method::PATCH,
            "/v1/projects/prj_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            Admin,
            Body::Json(json!({"strict_event_types": true})),
        )
        .expect(404, "not_found", None),
    ]
}

fn multipart(text: &'static str) -> Body {
    Body::Raw {
        content_type: "multipart/form-data; boundary=b",
        bytes: text.as_bytes().to_vec(),
    }
}

/// Sends one case and checks the answer.
async fn check(app: &TestApp, case: Case, project_key: &str, project_id: &str, webhook_id: &str) {
    let path = case
        .path
        .replace("{project}", project_id)
        .replace("{webhook}", webhook_id);
    let mut request = app.http.request(case.method.clone(), format!("{}{path}", app.base));
    match case.key {
        Key::None => {}
        Key::Admin => request = request.bearer_auth(ADMIN_KEY),
        Key::Project => request = request.bearer_auth(project_key),
    }
    for (name, value) in &case.headers {
        request = request.header(*name, *value);
    }
    request = match case.body {
        Body::None => request,
        Body::Json(value) => request.json(&value),
        Body::Raw { content_type, bytes } => request.header("content-type", content_type).body(bytes),
    };
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body read");
    let name = case.name;
    assert_eq!(status, case.status, "{name}: {}", String::from_utf8_lossy(&bytes));
    if case.code.is_empty() {
        return;
    }
    assert!(bytes.len() < 2048, "{name}: the error body is {} bytes", bytes.len());
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{name}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    assert_eq!(body["error"]["code"], case.code, "{name}: {body}");
    assert!(body["error"]["message"].is_string(), "{name}: {body}");
    if let Some(field) = case.field {
        assert_eq!(body["error"]["field"], field, "{name}: {body}");
    }
}

#[tokio::test]
async fn hostile_requests_get_clear_json_errors() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_request_bytes = 2 * 1024 * 1024;
        config.limits.max_payload_bytes = 64 * 1024;
    })
    .await;
    let project = app.project("acme").await;
    let webhook = app.webhook(&project, "http://127.0.0.1:9/hook", &["*"]).await;
    let webhook_id = webhook["id"].as_str().expect("id").to_owned();
    for case in cases() {
        check(&app, case, &project.key, &project.id, &webhook_id).await;
    }
    let (status, unchanged) = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{webhook_id}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(unchanged["name"], webhook["name"], "no refused PATCH changed anything");
}
