//! `/v1/webhooks`: a project's endpoint subscriptions.

use std::sync::Arc;

use axum::extract::{FromRequest, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::controls::{ControlsInput, ControlsView};
use super::error::{ApiError, echo};
use super::event_type_gate::EventTypeGate;
use super::json::{JsonBody, OptionalJsonBody};
use super::pagination::{next_page_token, page_request};
use super::path::ApiPath;
use crate::domain::project::Name;
use crate::domain::webhook::{EndpointUri, SigningSecretInfo, Webhook};
use crate::domain::{ProjectId, SecretId, SigningKind, SubscribedEvents, Timestamp, WebhookId, WebhookState};
use crate::store::{NewSecret, NewWebhook, WebhookPatch};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateWebhook {
    uri: String,
    subscribed_events: Vec<String>,
    name: Option<String>,
    signing: Option<String>,
    rate_limit_per_second: Option<serde_json::Value>,
    max_concurrency: Option<serde_json::Value>,
    ordering: Option<serde_json::Value>,
    retry_schedule: Option<serde_json::Value>,
}

/// A PATCH body: a field that is absent stays as it is; `null` is refused
/// (these fields cannot be cleared), so `Some(None)` below means "sent as
/// null". The controls (`rate_limit_per_second`, …) can be cleared: a
/// `null` arrives as `Some(Value::Null)`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateWebhook {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    subscribed_events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    state: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_value")]
    rate_limit_per_second: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present_value")]
    max_concurrency: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present_value")]
    ordering: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present_value")]
    retry_schedule: Option<serde_json::Value>,
}

/// A present field's value, `null` included (`Some(Value::Null)`).
fn present_value<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The fields a PATCH changes, each given a value.
struct WebhookUpdate {
    name: Option<String>,
    uri: Option<String>,
    subscribed_events: Option<Vec<String>>,
    state: Option<String>,
    controls: ControlsInput,
}

impl WebhookUpdate {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.uri.is_none()
            && self.subscribed_events.is_none()
            && self.state.is_none()
            && self.controls.rate_limit_per_second.is_none()
            && self.controls.max_concurrency.is_none()
            && self.controls.ordering.is_none()
            && self.controls.retry_schedule.is_none()
    }
}

impl UpdateWebhook {
    fn into_update(self) -> Result<WebhookUpdate, ApiError> {
        fn value<T>(field: &str, sent: Option<Option<T>>) -> Result<Option<T>, ApiError> {
            match sent {
                Some(None) => Err(ApiError::invalid(
                    field,
                    "must not be null: omit the field to leave it unchanged",
                )),
                Some(Some(value)) => Ok(Some(value)),
                None => Ok(None),
            }
        }
        Ok(WebhookUpdate {
            name: value("name", self.name)?,
            uri: value("uri", self.uri)?,
            subscribed_events: value("subscribed_events", self.subscribed_events)?,
            state: value("state", self.state)?,
            controls: ControlsInput {
                rate_limit_per_second: self.rate_limit_per_second,
                max_concurrency: self.max_concurrency,
                ordering: self.ordering,
                retry_schedule: self.retry_schedule,
            },
        })
    }
}

#[derive(Serialize)]
pub(super) struct SecretView {
    id: SecretId,
    /// HMAC: the first characters of the secret. Ed25519: omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_secret: Option<String>,
    /// Ed25519: the public key receivers verify with.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    create_time: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    expire_time: Option<Timestamp>,
}

#[derive(Serialize)]
pub(super) struct WebhookView {
    id: WebhookId,
    name: String,
    uri: String,
    subscribed_events: Vec<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    signing: &'static str,
    signing_secrets: Vec<SecretView>,
    #[serde(flatten)]
    controls: ControlsView,
    create_time: Timestamp,
    update_time: Timestamp,
    /// The new HMAC secret: only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    new_signing_secret: Option<String>,
}

impl WebhookView {
    fn new(webhook: Webhook) -> Self {
        let signing_secrets = webhook.signing_secrets.into_iter().map(secret_view).collect();
        Self {
            id: webhook.id,
            name: webhook.name.as_str().to_owned(),
            uri: webhook.uri.as_str().to_owned(),
            subscribed_events: webhook.subscribed_events.to_strings(),
            state: webhook.state.as_str(),
            state_reason: webhook.state_reason,
            signing: webhook.signing.as_str(),
            signing_secrets,
            controls: ControlsView::new(&webhook.controls),
            create_time: webhook.create_time,
            update_time: webhook.update_time,
            new_signing_secret: None,
        }
    }
}

fn secret_view(secret: SigningSecretInfo) -> SecretView {
    let truncated_secret = secret.public_key.is_none().then_some(secret.display);
    SecretView {
        id: secret.id,
        truncated_secret,
        public_key: secret.public_key,
        create_time: secret.create_time,
        expire_time: secret.expire_time,
    }
}

#[derive(Serialize)]
pub(super) struct WebhookList {
    webhooks: Vec<WebhookView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// Parses and vets a URI: syntax, then the SSRF policy for literal
/// addresses and `localhost` names (host names are vetted at connect time).
fn endpoint_uri(state: &AppState, text: &str) -> Result<EndpointUri, ApiError> {
    vetted_uri(state, text, "uri")
}

/// [`endpoint_uri`] for the wire field `field` (per-job webhooks' `uris[i]`).
pub(super) fn vetted_uri(state: &AppState, text: &str, field: &str) -> Result<EndpointUri, ApiError> {
    let uri = EndpointUri::parse(text).map_err(ApiError::invalid_field(field))?;
    let refused = |reason| {
        ApiError::invalid(
            field,
            format!("Herald does not deliver to {reason} addresses (see allow_target_cidrs)"),
        )
    };
    match uri.host() {
        Some(url::Host::Ipv4(ip)) => state.address_policy.check(ip.into()).map_err(refused)?,
        Some(url::Host::Ipv6(ip)) => state.address_policy.check(ip.into()).map_err(refused)?,
        Some(url::Host::Domain(name)) => state.address_policy.check_host_name(name).map_err(refused)?,
        None => return Err(ApiError::invalid(field, "the URI must have a host")),
    }
    Ok(uri)
}

fn subscribed_events(items: &[String]) -> Result<SubscribedEvents, ApiError> {
    SubscribedEvents::parse(items).map_err(ApiError::invalid_field("subscribed_events"))
}

/// A fresh signing secret of `kind` (minted by the domain).
pub(super) fn new_secret(kind: SigningKind) -> Result<NewSecret, ApiError> {
    NewSecret::mint(kind).map_err(|e| ApiError::Internal(e.message))
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    JsonBody { value, .. }: JsonBody<CreateWebhook>,
) -> Result<(StatusCode, Json<WebhookView>), ApiError> {
    let project = principal.require_project()?;
    let uri = endpoint_uri(&state, &value.uri)?;
    let subscribed_events = subscribed_events(&value.subscribed_events)?;
    gate.check_subscription(state.store.as_ref(), project, &value.subscribed_events)
        .await?;
    let name = match value.name.as_deref() {
        Some(name) => Name::parse(name).map_err(ApiError::invalid_field("name"))?,
        // Default: the host, cut to a valid name's length.
        None => {
            let host: String = uri
                .host()
                .map(|h| h.to_string())
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            Name::parse(&host).map_err(ApiError::invalid_field("name"))?
        }
    };
    let signing = match value.signing.as_deref() {
        None => SigningKind::Hmac,
        Some(text) => SigningKind::parse_user_choice(text)
            .ok_or_else(|| ApiError::invalid("signing", "must be \"hmac\" or \"ed25519\""))?,
    };
    let controls = super::controls::for_create(
        &ControlsInput {
            rate_limit_per_second: value.rate_limit_per_second,
            max_concurrency: value.max_concurrency,
            ordering: value.ordering,
            retry_schedule: value.retry_schedule,
        },
        state.retry_window,
    )?;
    let secret = new_secret(signing)?;
    let shown = secret.material.reveal_once().map(|text| text.to_string());
    let new = NewWebhook {
        id: WebhookId::generate(),
        project_id: project,
        name,
        uri,
        subscribed_events,
        signing,
        controls,
        secret,
        now: state.clock.now(),
        max_per_project: state.limits.max_webhooks_per_project,
    };
    let webhook = state.store.create_webhook(new).await?;
    let mut view = WebhookView::new(webhook);
    view.new_signing_secret = shown;
    Ok((StatusCode::CREATED, Json(view)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<WebhookList>, ApiError> {
    let project = principal.require_project()?;
    let page = state
        .store
        .list_webhooks(project, page_request(&query)?, state.clock.now())
        .await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(WebhookList {
        webhooks: page.items.into_iter().map(WebhookView::new).collect(),
        next_page_token,
    }))
}

fn webhook_id(text: &str) -> Result<WebhookId, ApiError> {
    WebhookId::parse(text).ok_or_else(|| ApiError::not_found("webhook", text))
}

pub(super) async fn load(state: &AppState, project: ProjectId, id: &str) -> Result<Webhook, ApiError> {
    state
        .store
        .get_webhook(project, webhook_id(id)?, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let project = principal.require_project()?;
    Ok(Json(WebhookView::new(load(&state, project, &id).await?)))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    query: RawQuery,
    JsonBody { value, .. }: JsonBody<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let project = principal.require_project()?;
    let value = apply_update_mask(value.into_update()?, &query)?;
    if value.is_empty() {
        return Err(ApiError::invalid(
            "update_mask",
            format!("nothing to update: send at least one of {}", UPDATABLE.join(", ")),
        ));
    }
    if let Some(items) = &value.subscribed_events {
        gate.check_subscription(state.store.as_ref(), project, items).await?;
    }
    let patch = WebhookPatch {
        name: value
            .name
            .as_deref()
            .map(Name::parse)
            .transpose()
            .map_err(ApiError::invalid_field("name"))?,
        uri: value.uri.as_deref().map(|uri| endpoint_uri(&state, uri)).transpose()?,
        subscribed_events: value.subscribed_events.as_deref().map(subscribed_events).transpose()?,
        state: value
            .state
            .as_deref()
            .map(|text| match WebhookState::parse(text) {
                Some(state @ (WebhookState::Enabled | WebhookState::Disabled)) => Ok(state),
                _ => Err(ApiError::invalid("state", "must be \"enabled\" or \"disabled\"")),
            })
            .transpose()?,
        controls: super::controls::for_patch(&value.controls, state.retry_window)?,
    };
    let updated = state
        .store
        .update_webhook(project, webhook_id(&id)?, patch, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", &id))?;
    Ok(Json(WebhookView::new(updated)))
}

/// The fields a PATCH may change.
const UPDATABLE: [&str; 8] = [
    "name",
    "uri",
    "subscribed_events",
    "state",
    "rate_limit_per_second",
    "max_concurrency",
    "ordering",
    "retry_schedule",
];

/// With `?update_mask=a,b`, only the named fields change (each must be in
/// the body); without it, every field present in the body changes.
fn apply_update_mask(mut value: WebhookUpdate, query: &RawQuery) -> Result<WebhookUpdate, ApiError> {
    let Some(fields) = super::update_mask::fields(query, "name,uri")? else {
        return Ok(value);
    };
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    for field in &fields {
        let present = match *field {
            "name" => value.name.is_some(),
            "uri" => value.uri.is_some(),
            "subscribed_events" => value.subscribed_events.is_some(),
            "state" => value.state.is_some(),
            "rate_limit_per_second" => value.controls.rate_limit_per_second.is_some(),
            "max_concurrency" => value.controls.max_concurrency.is_some(),
            "ordering" => value.controls.ordering.is_some(),
            "retry_schedule" => value.controls.retry_schedule.is_some(),
            other => {
                return Err(ApiError::invalid(
                    "update_mask",
                    format!(
                        "{} is not an updatable field (expected {})",
                        echo(other),
                        UPDATABLE.join(", ")
                    ),
                ));
            }
        };
        if !present {
            return Err(ApiError::invalid(
                *field,
                "named in update_mask but missing from the body",
            ));
        }
    }
    let keep = |field: &str| fields.contains(&field);
    if !keep("name") {
        value.name = None;
    }
    if !keep("uri") {
        value.uri = None;
    }
    if !keep("subscribed_events") {
        value.subscribed_events = None;
    }
    if !keep("state") {
        value.state = None;
    }
    if !keep("rate_limit_per_second") {
        value.controls.rate_limit_per_second = None;
    }
    if !keep("max_concurrency") {
        value.controls.max_concurrency = None;
    }
    if !keep("ordering") {
        value.controls.ordering = None;
    }
    if !keep("retry_schedule") {
        value.controls.retry_schedule = None;
    }
    Ok(value)
}

/// Answers `200 {}` as Google APIs do (the google-genai SDK refuses a
/// bodiless `204`).
pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let project = principal.require_project()?;
    if !state
        .store
        .delete_webhook(project, webhook_id(&id)?, state.clock.now())
        .await?
    {
        return Err(ApiError::not_found("webhook", &id));
    }
    Ok(Json(serde_json::Map::new()))
}

#[derive(Serialize)]
pub(super) struct PingView {
    event_id: crate::domain::EventId,
    delivery_id: crate::domain::DeliveryId,
    attempt: super::events::AttemptView,
}

/// `POST /v1/webhooks/{id}:ping`, `…:rotateSigningSecret` and `…:replay`.
pub(super) async fn custom_method(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(segment): ApiPath<String>,
    request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let project = principal.require_project()?;
    let Some((id, verb)) = segment.split_once(':') else {
        return Err(ApiError::MethodNotAllowed(format!(
            "POST is not allowed on {}; methods are :ping, :rotateSigningSecret and :replay",
            echo(&segment)
        )));
    };
    match verb {
        "ping" => Ok(ping(&state, project, id).await?.into_response()),
        "rotateSigningSecret" => {
            let OptionalJsonBody(body) = OptionalJsonBody::from_request(request, &state).await?;
            Ok(super::secrets::rotate_signing_secret(&state, project, id, body)
                .await?
                .into_response())
        }
        "replay" => {
            let body = super::json::read_body(request, &state).await?;
            super::replays::create(&state, project, webhook_id(id)?, &body).await
        }
        other => Err(ApiError::NotFound(format!(
            "no such method :{} on webhooks (expected :ping, :rotateSigningSecret or :replay)",
            echo(other)
        ))),
    }
}

/// Sends a `webhook.ping` event to that webhook now (a real event and
/// delivery, in the log) and answers with the attempt's outcome. Any body
/// is ignored: the SDK sends none.
async fn ping(state: &AppState, project: ProjectId, id: &str) -> Result<Json<PingView>, ApiError> {
    let outcome = state
        .manual_attempts
        .ping(project, webhook_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))?;
    Ok(Json(PingView {
        event_id: outcome.event_id,
        delivery_id: outcome.delivery_id,
        attempt: outcome.attempt.into(),
    }))
}
