//! Event types: the registry's lifecycle, schema validation at publish
//! (errors naming the JSON path), strict mode at publish and subscribe
//! time, and the per-node schema cache's invalidation and staleness bound.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{ADMIN_KEY, Project, TestApp};

fn price_schema(price_type: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object",
            "required": ["price"],
            "properties": {"price": {"type": price_type}},
        }}},
    })
}

async fn create_type(app: &TestApp, project: &Project, body: Value) -> Value {
    let (status, created) = app
        .call(Method::POST, "/v1/event_types", Some(&project.key), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

async fn publish(app: &TestApp, project: &Project, event_type: &str, data: Value) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        "/v1/events",
        Some(&project.key),
        Some(json!({"type": event_type, "data": data})),
    )
    .await
}

async fn set_strict(app: &TestApp, project: &Project, strict: bool) {
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/v1/projects/{}", project.id),
            Some(ADMIN_KEY),
            Some(json!({"strict_event_types": strict})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["strict_event_types"], strict);
    // The project's own resource shows the switch as it now is.
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/v1/projects/{}", project.id),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["strict_event_types"], strict, "{body}");
}

/// Asserts a 400 naming `field`; returns the message.
fn refused(answer: (StatusCode, Value), field: &str) -> String {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn event_types_are_created_listed_patched_and_archived() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let other = app.project("other").await;
    let created = create_type(
        &app,
        &project,
        json!({"name": "order.created", "description": "An order was placed", "schema": price_schema("number")}),
    )
    .await;
    assert_eq!(created["name"], "order.created");
    assert_eq!(created["schema"], price_schema("number"));
    assert_eq!(created["archived"], false);
    create_type(&app, &project, json!({"name": "order.shipped"})).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/v1/event_types",
            Some(&project.key),
            Some(json!({"name": "order.created"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, one) = app
        .call(Method::GET, "/v1/event_types/order.created", Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["description"], "An order was placed");
    let (status, _) = app
        .call(Method::GET, "/v1/event_types/order.created", Some(&other.key), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another project's type is not seen");

    let (status, page) = app
        .call(Method::GET, "/v1/event_types?page_size=1", Some(&project.key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["event_types"][0]["name"], "order.created");
    let token = page["next_page_token"].as_str().expect("a second page").to_owned();
    let (_, page) = app
        .call(
            Method::GET,
            &format!("/v1/event_types?page_size=1&page_token={token}"),
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(page["event_types"][0]["name"], "order.shipped");

    // update_mask: only the named field changes; null clears.
    let (status, patched) = app
        .call(
            Method::PATCH,
            "/v1/event_types/order.created?update_mask=description",
            Some(&project.key),
            Some(json!({"description": "Placed", "schema": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["description"].clone(), patched["schema"].clone()),
        (json!("Placed"), price_schema("number"))
    );
    let (_, patched) = app
        .call(
            Method::PATCH,
            "/v1/event_types/order.created",
            Some(&project.key),
            Some(json!({"schema": null})),
        )
        .await;
    assert!(patched.get("schema").is_none(), "{patched}");
    assert_eq!(patched["description"], "Placed");

    let (status, body) = app
        .call(
            Method::DELETE,
            "/v1/event_types/order.shipped",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, _) = app
        .call(
            Method::DELETE,
            "/v1/event_types/order.shipped",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "archived once");
    let (_, listed) = app.call(Method::GET, "/v1/event_types", Some(&project.key), None).await;
    let names: Vec<&Value> = listed["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    assert_eq!(names, [&json!("order.created")], "archived types are hidden");
    let (_, listed) = app
        .call(
            Method::GET,
            "/v1/event_types?show_archived=true",
            Some(&project.key),
            None,
        )
        .await;
    assert_eq!(listed["event_types"].as_array().unwrap().len(), 2);
    assert_eq!(listed["event_types"][1]["archived"], true);
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/event_types/order.shipped",
            Some(&project.key),
            Some(json!({"description": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an archived type is not patched");
    let again = create_type(&app, &project, json!({"name": "order.shipped", "description": "back"})).await;
    assert_eq!(
        (again["archived"].clone(), again["description"].clone()),
        (json!(false), json!("back"))
    );
}

#[tokio::test]
async fn data_breaking_a_schema_is_refused_naming_the_path() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    create_type(
        &app,
        &project,
        json!({"name": "order.created", "schema": price_schema("number")}),
    )
    .await;
    let message = refused(
        publish(
            &app,
            &project,
            "order.created",
            json!({"items": [{"price": 1}, {"price": 2.5}, {"price": "ten"}]}),
        )
        .await,
        "data.items[2].price",
    );
    assert!(message.contains("number"), "the rule is named: {message}");
    let message = refused(
        publish(&app, &project, "order.created", json!({"items": [{}]})).await,
        "data.items[0]",
    );
    assert!(message.contains("price"), "{message}");
    let (status, body) = publish(&app, &project, "order.created", json!({"items": [{"price": 3}]})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = publish(&app, &project, "order.untyped", json!({"anything": true})).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "an unregistered type is not checked outside strict mode: {body}"
    );

    // A batch names the event's index; nothing of a refused batch is published.
    let batch = json!({"events": [
        {"type": "order.created", "data": {"items": [{"price": 1}]}},
        {"type": "order.untyped", "data": {}},
        {"type": "order.created", "data": {"items": [{"price": 1}, {"price": null}]}},
    ]});
    let answer = app
        .call(Method::POST, "/v1/events:batchCreate", Some(&project.key), Some(batch))
        .await;
    refused(answer, "events[2].data.items[1].price");
    let published = app.query_count("SELECT COUNT(*) FROM events").await;
    assert_eq!(published, 2, "only the two single publishes were stored");
}

#[tokio::test]
async fn invalid_schemas_are_refused_naming_the_problem() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    for (schema, hint) in [
        (json!({"type": "strnig"}), "strnig"),
        (json!({"properties": {"price": {"minimum": "three"}}}), "three"),
        (json!(["not", "an", "object"]), "object"),
        (json!({"$ref": "https://schemas.example/order.json"}), "schemas.example"),
    ] {
        let answer = app
            .call(
                Method::POST,
                "/v1/event_types",
                Some(&project.key),
                Some(json!({"name": "order.created", "schema": schema})),
            )
            .await;
        let message = refused(answer, "schema");
        assert!(message.contains(hint), "{schema}: {message}");
    }
    create_type(&app, &project, json!({"name": "order.created"})).await;
    let answer = app
        .call(
            Method::PATCH,
            "/v1/event_types/order.created",
            Some(&project.key),
            Some(json!({"schema": {"type": 7}})),
        )
        .await;
    refused(answer, "schema");
}

#[tokio::test]
async fn strict_mode_refuses_unknown_types_at_publish_and_subscribe() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    let relaxed = app.project("relaxed").await;
    create_type(&app, &project, json!({"name": "order.created"})).await;
    create_type(&app, &project, json!({"name": "order.retired"})).await;
    let (status, _) = publish(&app, &project, "order.unknown", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "strict mode is off by default");

    set_strict(&app, &project, true).await;
    let message = refused(publish(&app, &project, "order.unknown", json!({})).await, "type");
    assert!(message.contains("strict"), "{message}");
    assert_eq!(
        publish(&app, &project, "order.created", json!({})).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        publish(&app, &relaxed, "order.unknown", json!({})).await.0,
        StatusCode::ACCEPTED,
        "strict mode is per project"
    );
    app.call(
        Method::DELETE,
        "/v1/event_types/order.retired",
        Some(&project.key),
        None,
    )
    .await;
    refused(publish(&app, &project, "order.retired", json!({})).await, "type");
    // Herald's own types are always known.
    assert_eq!(
        publish(&app, &project, "batch.completed", json!({})).await.0,
        StatusCode::ACCEPTED
    );
    let batch = json!({"events": [
        {"type": "order.created", "data": {}},
        {"type": "order.nope", "data": {}},
    ]});
    refused(
        app.call(Method::POST, "/v1/events:batchCreate", Some(&project.key), Some(batch))
            .await,
        "events[1].type",
    );

    let answer = app
        .call(
            Method::POST,
            "/v1/webhooks",
            Some(&project.key),
            Some(json!({"uri": "http://127.0.0.1:9/hook", "subscribed_events": ["order.created", "order.nope"]})),
        )
        .await;
    refused(answer, "subscribed_events[1]");
    let webhook = app
        .webhook(
            &project,
            "http://127.0.0.1:9/hook",
            &[
                "order.created",
                "order.*",
                "*",
                "batch.completed",
                "operation.*",
                "webhook.ping",
                "delivery.failed",
            ],
        )
        .await;
    let answer = app
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap()),
            Some(&project.key),
            Some(json!({"subscribed_events": ["order.retired"]})),
        )
        .await;
    refused(answer, "subscribed_events[0]");

    set_strict(&app, &project, false).await;
    assert_eq!(
        publish(&app, &project, "order.unknown", json!({})).await.0,
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn schema_changes_apply_at_once_here_and_within_the_ttl_elsewhere() {
    let app = TestApp::spawn().await;
    let project = app.project("acme").await;
    create_type(
        &app,
        &project,
        json!({"name": "order.created", "schema": price_schema("number")}),
    )
    .await;
    let text = json!({"items": [{"price": "ten"}]});
    refused(
        publish(&app, &project, "order.created", text.clone()).await,
        "data.items[0].price",
    );

    // A PATCH through this node is seen by the next publish.
    let (status, _) = app
        .call(
            Method::PATCH,
            "/v1/event_types/order.created",
            Some(&project.key),
            Some(json!({"schema": price_schema("string")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        publish(&app, &project, "order.created", text.clone()).await.0,
        StatusCode::ACCEPTED
    );

    // A change this node did not make (another node's, written straight
    // to the store here) is seen once the cached entry is older than the TTL.
    let store = &app.running().store;
    let project_id = herald::domain::ProjectId::parse(&project.id).unwrap();
    let patch = herald::store::EventTypePatch {
        description: None,
        schema: Some(Some(price_schema("number").to_string())),
    };
    store
        .update_event_type(
            project_id,
            herald::domain::EventType::parse("order.created").unwrap(),
            patch,
            app.clock_now(),
        )
        .await
        .unwrap()
        .expect("the type exists");
    assert_eq!(
        publish(&app, &project, "order.created", text.clone()).await.0,
        StatusCode::ACCEPTED,
        "within the TTL the cached schema still answers"
    );
    app.advance(Duration::from_secs(6));
    refused(
        publish(&app, &project, "order.created", text).await,
        "data.items[0].price",
    );

    // Archiving in strict mode refuses the type at once.
    set_strict(&app, &project, true).await;
    app.call(
        Method::DELETE,
        "/v1/event_types/order.created",
        Some(&project.key),
        None,
    )
    .await;
    refused(
        publish(&app, &project, "order.created", json!({"items": []})).await,
        "type",
    );
}
