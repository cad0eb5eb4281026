//! `/v1/projects` and their API keys (admin only).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::{Principal, generate_api_key};
use super::error::ApiError;
use super::json::{JsonBody, OptionalJsonBody};
use super::pagination::{next_page_token, page_request};
use super::path::ApiPath;
use crate::domain::project::{ApiKey, Name, Project};
use crate::domain::{ApiKeyId, ProjectId, Timestamp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateProject {
    name: String,
}

#[derive(Serialize)]
pub(super) struct ProjectView {
    id: ProjectId,
    name: String,
    create_time: Timestamp,
    /// Strict event types (see `api::event_types`): shown by the get of
    /// one project, left out of lists (one more read per project).
    #[serde(skip_serializing_if = "Option::is_none")]
    strict_event_types: Option<bool>,
}

impl From<Project> for ProjectView {
    fn from(project: Project) -> Self {
        Self {
            id: project.id,
            name: project.name.as_str().to_owned(),
            create_time: project.create_time,
            strict_event_types: None,
        }
    }
}

#[derive(Serialize)]
pub(super) struct ProjectList {
    projects: Vec<ProjectView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody { value, .. }: JsonBody<CreateProject>,
) -> Result<(StatusCode, Json<ProjectView>), ApiError> {
    principal.require_admin()?;
    let name = Name::parse(&value.name).map_err(ApiError::invalid_field("name"))?;
    let project = Project {
        id: ProjectId::generate(),
        name,
        create_time: state.clock.now(),
    };
    state.store.create_project(project.clone()).await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<ProjectList>, ApiError> {
    principal.require_admin()?;
    let page = state.store.list_projects(page_request(&query)?).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(ProjectList {
        projects: page.items.into_iter().map(Into::into).collect(),
        next_page_token,
    }))
}

fn project_id(text: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(text).ok_or_else(|| ApiError::not_found("project", text))
}

pub(super) async fn get(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ProjectView>, ApiError> {
    principal.require_admin()?;
    let project = state
        .store
        .get_project(project_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("project", &id))?;
    let strict = state.store.strict_event_types(project.id).await?;
    let mut view = ProjectView::from(project);
    view.strict_event_types = Some(strict);
    Ok(Json(view))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateKey {
    name: Option<String>,
}

#[derive(Serialize)]
pub(super) struct KeyView {
    id: ApiKeyId,
    project_id: ProjectId,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The first characters of the key, to tell keys apart.
    key_prefix: String,
    create_time: Timestamp,
    /// The key itself: only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            project_id: key.project_id,
            name: key.name.map(|n| n.as_str().to_owned()),
            key_prefix: key.key_prefix,
            create_time: key.create_time,
            key: None,
        }
    }
}

pub(super) async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    OptionalJsonBody(body): OptionalJsonBody<CreateKey>,
) -> Result<(StatusCode, Json<KeyView>), ApiError> {
    principal.require_admin()?;
    let project = project_id(&id)?;
    let name = body
        .name
        .as_deref()
        .map(Name::parse)
        .transpose()
        .map_err(ApiError::invalid_field("name"))?;
    let (secret, hash) = generate_api_key();
    let key = ApiKey {
        id: ApiKeyId::generate(),
        project_id: project,
        name,
        key_prefix: secret.chars().take(10).collect(),
        create_time: state.clock.now(),
    };
    state
        .store
        .create_api_key(key.clone(), hash)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found("project", &id),
            other => other.into(),
        })?;
    let mut view = KeyView::from(key);
    view.key = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Serialize)]
pub(super) struct KeyList {
    api_keys: Vec<KeyView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

pub(super) async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    query: RawQuery,
) -> Result<Json<KeyList>, ApiError> {
    principal.require_admin()?;
    let project = project_id(&id)?;
    let page_request = page_request(&query)?;
    if state.store.get_project(project).await?.is_none() {
        return Err(ApiError::not_found("project", &id));
    }
    let page = state.store.list_api_keys(project, page_request).await?;
    let next_page_token = next_page_token(&page);
    Ok(Json(KeyList {
        api_keys: page.items.into_iter().map(Into::into).collect(),
        next_page_token,
    }))
}

pub(super) async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require_admin()?;
    let project = project_id(&id)?;
    let key = ApiKeyId::parse(&key_id).ok_or_else(|| ApiError::not_found("api key", &key_id))?;
    if !state.store.revoke_api_key(project, key, state.clock.now()).await? {
        return Err(ApiError::not_found("api key", &key_id));
    }
    state.auth.forget(key);
    Ok(StatusCode::NO_CONTENT)
}
