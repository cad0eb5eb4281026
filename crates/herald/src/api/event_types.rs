//! `/v1/event_types`: a project's registry of event types (description and
//! JSON Schema of `data`), and the admin's strict-mode switch on
//! `PATCH /v1/projects/{id}`.
//!
//! Schemas are compiled here before they are stored, so the store only
//! ever holds schemas that compile; every change forgets this node's
//! cached copy (`EventTypeGate`) once the store has committed it.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, echo};
use super::event_type_gate::EventTypeGate;
use super::json::JsonBody;
use super::pagination::{next_page_token, page_request_with};
use super::path::ApiPath;
use crate::domain::event_type::{EventSchema, EventTypeRecord, is_herald_own, parse_description};
use crate::domain::{EventType, ProjectId, Timestamp};
use crate::store::{CreatedEventType, EventTypePatch, NewEventType};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateEventType {
    name: String,
    description: Option<String>,
    schema: Option<serde_json::Value>,
}

/// A PATCH body: an absent field stays; `null` clears it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateEventType {
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    schema: Option<Option<serde_json::Value>>,
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Serialize)]
pub(super) struct EventTypeView {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<Box<serde_json::value::RawValue>>,
    archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive_time: Option<Timestamp>,
    create_time: Timestamp,
    update_time: Timestamp,
}

impl EventTypeView {
    fn new(record: EventTypeRecord) -> Result<Self, ApiError> {
        let schema = record
            .schema
            .map(serde_json::value::RawValue::from_string)
            .transpose()
            .map_err(|e| ApiError::Internal(format!("stored schema is not JSON: {e}")))?;
        Ok(Self {
            name: record.name.as_str().to_owned(),
            description: record.description,
            schema,
            archived: record.archive_time.is_some(),
            archive_time: record.archive_time,
            create_time: record.create_time,
            update_time: record.update_time,
        })
    }
}

#[derive(Serialize)]
pub(super) struct EventTypeList {
    event_types: Vec<EventTypeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

fn registrable_name(text: &str) -> Result<EventType, ApiError> {
    let name = EventType::parse(text).map_err(ApiError::invalid_field("name"))?;
    if is_herald_own(name.as_str()) {
        return Err(ApiError::invalid(
            "name",
            "batch.*, operation.*, webhook.* and delivery.* are Herald's own event types; choose another name",
        ));
    }
    Ok(name)
}

/// A type named in the path; one that cannot exist is simply not found.
fn path_name(text: &str) -> Result<EventType, ApiError> {
    EventType::parse(text).map_err(|_| ApiError::not_found("event type", text))
}

fn compiled(schema: &serde_json::Value) -> Result<String, ApiError> {
    EventSchema::compile(schema)
        .map(|schema| schema.as_json().to_owned())
        .map_err(ApiError::invalid_field("schema"))
}

fn description(text: &str) -> Result<String, ApiError> {
    parse_description(text).map_err(ApiError::invalid_field("description"))
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    JsonBody { value, .. }: JsonBody<CreateEventType>,
) -> Result<(StatusCode, Json<EventTypeView>), ApiError> {
    let project = principal.require_project()?;
    let name = registrable_name(&value.name)?;
    let new = NewEventType {
        project_id: project,
        name: name.clone(),
        description: value.description.as_deref().map(description).transpose()?,
        schema: value.schema.as_ref().map(compiled).transpose()?,
        now: state.clock.now(),
    };
    let created = match state.store.create_event_type(new).await? {
        CreatedEventType::Created(record) => record,
        CreatedEventType::Exists => {
            return Err(ApiError::Conflict(format!(
                "event type {} already exists; PATCH it to change it",
                name.as_str()
            )));
        }
        CreatedEventType::ProjectNotFound => return Err(ApiError::not_found("project", &project.to_string())),
    };
    gate.forget_type(project, &name);
    Ok((StatusCode::CREATED, Json(EventTypeView::new(created)?)))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<EventTypeList>, ApiError> {
    let project = principal.require_project()?;
    let mut show_archived = false;
    let page = page_request_with(&query, "page_size, page_token, show_archived", |name, value| {
        if name != "show_archived" {
            return Ok(false);
        }
        show_archived = match value {
            "true" => true,
            "false" => false,
            _ => return Err(ApiError::invalid("show_archived", "must be true or false")),
        };
        Ok(true)
    })?;
    let page = state.store.list_event_types(project, page, show_archived).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(EventTypeList {
        event_types: page
            .items
            .into_iter()
            .map(EventTypeView::new)
            .collect::<Result<_, _>>()?,
        next_page_token,
    }))
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<EventTypeView>, ApiError> {
    let project = principal.require_project()?;
    let record = state
        .store
        .get_event_type(project, path_name(&name)?)
        .await?
        .ok_or_else(|| ApiError::not_found("event type", &name))?;
    Ok(Json(EventTypeView::new(record)?))
}

pub(super) async fn update(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    query: RawQuery,
    JsonBody { value, .. }: JsonBody<UpdateEventType>,
) -> Result<Json<EventTypeView>, ApiError> {
    let project = principal.require_project()?;
    let value = apply_update_mask(value, &query)?;
    if value.description.is_none() && value.schema.is_none() {
        return Err(ApiError::invalid(
            "update_mask",
            "nothing to update: send description or schema (null clears one)",
        ));
    }
    let patch = EventTypePatch {
        description: value
            .description
            .map(|d| d.as_deref().map(description).transpose())
            .transpose()?,
        schema: value.schema.map(|s| s.as_ref().map(compiled).transpose()).transpose()?,
    };
    let event_type = path_name(&name)?;
    let updated = state
        .store
        .update_event_type(project, event_type.clone(), patch, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("event type", &name))?;
    gate.forget_type(project, &event_type);
    Ok(Json(EventTypeView::new(updated)?))
}

/// With `?update_mask=a,b`, only the named fields change (each must be in
/// the body, `null` included); without it, every field in the body changes.
fn apply_update_mask(mut value: UpdateEventType, query: &RawQuery) -> Result<UpdateEventType, ApiError> {
    let Some(fields) = super::update_mask::fields(query, "schema")? else {
        return Ok(value);
    };
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    for field in &fields {
        let present = match *field {
            "description" => value.description.is_some(),
            "schema" => value.schema.is_some(),
            other => {
                return Err(ApiError::invalid(
                    "update_mask",
                    format!(
                        "{} is not an updatable field (expected description, schema)",
                        echo(other)
                    ),
                ));
            }
        };
        if !present {
            return Err(ApiError::invalid(
                *field,
                "named in update_mask but missing from the body (send null to clear it)",
            ));
        }
    }
    if !fields.contains(&"description") {
        value.description = None;
    }
    if !fields.contains(&"schema") {
        value.schema = None;
    }
    Ok(value)
}

/// Archives: answers `200 {}` like the other deletes.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let project = principal.require_project()?;
    let event_type = path_name(&name)?;
    if !state
        .store
        .archive_event_type(project, event_type.clone(), state.clock.now())
        .await?
    {
        return Err(ApiError::not_found("event type", &name));
    }
    gate.forget_type(project, &event_type);
    Ok(Json(serde_json::Map::new()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProjectSettings {
    strict_event_types: bool,
}

#[derive(Serialize)]
pub(super) struct ProjectSettingsView {
    id: ProjectId,
    strict_event_types: bool,
}

/// `PATCH /v1/projects/{id}` (admin): switches strict mode.
pub(super) async fn patch_project(
    State(state): State<AppState>,
    Extension(gate): Extension<Arc<EventTypeGate>>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    JsonBody { value, .. }: JsonBody<ProjectSettings>,
) -> Result<Json<ProjectSettingsView>, ApiError> {
    principal.require_admin()?;
    let project = ProjectId::parse(&id).ok_or_else(|| ApiError::not_found("project", &id))?;
    if !state
        .store
        .set_strict_event_types(project, value.strict_event_types)
        .await?
    {
        return Err(ApiError::not_found("project", &id));
    }
    gate.forget_strict(project);
    Ok(Json(ProjectSettingsView {
        id: project,
        strict_event_types: value.strict_event_types,
    }))
}
