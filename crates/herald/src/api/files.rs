//! `/v1/files`: OpenAI-compatible file uploads (multipart, streamed into
//! the store in chunks, limited while streaming), listing, metadata,
//! content (streamed out chunk by chunk) and deletion.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, echo};
use super::path::ApiPath;
use crate::domain::{FileId, ProjectId};
use crate::store::batches::{FILE_CHUNK_BYTES, FileRecord, NewFile};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        // The upload enforces `batches.max_file_bytes` itself, while streaming.
        .route(
            "/v1/files",
            post(upload).layer(DefaultBodyLimit::disable()).get(list),
        )
        .route("/v1/files/{file_id}", get(get_file).delete(delete))
        .route("/v1/files/{file_id}/content", get(content))
}

/// The purposes a file may be uploaded with.
const PURPOSES: [&str; 1] = ["batch"];
const MAX_FILENAME_CHARS: usize = 256;

#[derive(Serialize)]
pub(super) struct FileView {
    id: FileId,
    object: &'static str,
    bytes: u64,
    created_at: i64,
    filename: String,
    purpose: String,
    status: &'static str,
}

impl FileView {
    fn new(file: FileRecord) -> Self {
        Self {
            id: file.id,
            object: "file",
            bytes: file.bytes,
            created_at: file.created_at.as_unix_seconds(),
            filename: file.filename,
            purpose: file.purpose,
            status: "processed",
        }
    }
}

#[derive(Serialize)]
pub(super) struct ListView<T> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// `limit` (1–100, default 20) and `after` (an id of type `T`).
pub(super) fn list_params<T>(query: &RawQuery, parse: impl Fn(&str) -> Option<T>) -> Result<(Option<T>, u32), ApiError> {
    let mut after = None;
    let mut limit = 20;
    for (name, value) in url::form_urlencoded::parse(query.0.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|limit| (1..=100).contains(limit))
                    .ok_or_else(|| ApiError::invalid("limit", "must be a number from 1 to 100"))?;
            }
            "after" if value.is_empty() => {}
            "after" => {
                after = Some(parse(&value).ok_or_else(|| ApiError::invalid("after", "not an id from a listing"))?);
            }
            other => {
                return Err(ApiError::invalid(
                    super::error::truncate(other, super::error::MAX_ECHO_CHARS),
                    "unknown query parameter (expected limit, after)",
                ));
            }
        }
    }
    Ok((after, limit))
}

/// A started upload: discarded unless [`Upload::finish`] completes it.
struct Upload<'a> {
    state: &'a AppState,
    id: FileId,
    begun: bool,
}

impl Upload<'_> {
    async fn discard(&self) {
        if self.begun
            && let Err(error) = self.state.store.discard_file(self.id).await
        {
            tracing::warn!(file = %self.id, %error, "could not discard an unfinished upload");
        }
    }
}

pub(super) async fn upload(
    State(state): State<AppState>,
    principal: Principal,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<FileView>, ApiError> {
    let project = principal.require_project()?;
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::UnsupportedMediaType(format!("send the file as multipart/form-data: {rejection}"))
    })?;
    let mut upload = Upload {
        state: &state,
        id: FileId::generate(),
        begun: false,
    };
    let result = receive(&state, project, &mut multipart, &mut upload).await;
    if result.is_err() {
        upload.discard().await;
    }
    result.map(|file| Json(FileView::new(file)))
}

async fn receive(
    state: &AppState,
    project: ProjectId,
    multipart: &mut Multipart,
    upload: &mut Upload<'_>,
) -> Result<FileRecord, ApiError> {
    let max = state.batches.max_file_bytes;
    let mut purpose = None;
    let mut size = None;
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        match field.name().unwrap_or_default() {
            "purpose" => {
                let text = field.text().await.map_err(malformed)?;
                if !PURPOSES.contains(&text.as_str()) {
                    return Err(ApiError::invalid(
                        "purpose",
                        format!("{} is not supported: use \"batch\"", echo(&text)),
                    ));
                }
                purpose = Some(text);
            }
            "file" if upload.begun => return Err(ApiError::invalid("file", "send one file per upload")),
            "file" => {
                let filename: String = field
                    .file_name()
                    .unwrap_or("upload.jsonl")
                    .chars()
                    .take(MAX_FILENAME_CHARS)
                    .collect();
                state
                    .store
                    .begin_file(NewFile {
                        id: upload.id,
                        project_id: project,
                        purpose: "batch".into(),
                        filename,
                        now: state.clock.now(),
                    })
                    .await?;
                upload.begun = true;
                let mut buffer = BytesMut::with_capacity(FILE_CHUNK_BYTES);
                let mut seq = 0;
                let mut total: u64 = 0;
                while let Some(piece) = field.chunk().await.map_err(malformed)? {
                    total += piece.len() as u64;
                    if total > max {
                        return Err(ApiError::PayloadTooLarge(format!(
                            "the file is larger than the limit of {max} bytes (batches.max_file_bytes)"
                        )));
                    }
                    buffer.extend_from_slice(&piece);
                    while buffer.len() >= FILE_CHUNK_BYTES {
                        let chunk = buffer.split_to(FILE_CHUNK_BYTES).freeze();
                        state.store.append_file_chunk(upload.id, seq, chunk).await?;
                        seq += 1;
                    }
                }
                if !buffer.is_empty() {
                    state.store.append_file_chunk(upload.id, seq, buffer.freeze()).await?;
                }
                size = Some(total);
            }
            other => {
                return Err(ApiError::invalid(
                    super::error::truncate(other, super::error::MAX_ECHO_CHARS),
                    "unknown form field (expected purpose, file)",
                ));
            }
        }
    }
    let Some(size) = size else {
        return Err(ApiError::invalid("file", "the form has no file field"));
    };
    if purpose.is_none() {
        return Err(ApiError::invalid("purpose", "the form has no purpose field (use \"batch\")"));
    }
    if size == 0 {
        return Err(ApiError::invalid("file", "the file is empty"));
    }
    Ok(state.store.finish_file(upload.id, size).await?)
}

fn malformed(error: axum::extract::multipart::MultipartError) -> ApiError {
    let status = error.status();
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(error.body_text());
    }
    ApiError::MalformedRequest(format!("the multipart body is malformed: {}", error.body_text()))
}

pub(super) fn file_id(text: &str) -> Result<FileId, ApiError> {
    FileId::parse(text).ok_or_else(|| ApiError::not_found("file", text))
}

async fn load(state: &AppState, project: ProjectId, id: &str) -> Result<FileRecord, ApiError> {
    state
        .store
        .get_file(project, file_id(id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("file", id))
}

pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    query: RawQuery,
) -> Result<Json<ListView<FileView>>, ApiError> {
    let project = principal.require_project()?;
    let (after, limit) = list_params(&query, FileId::parse)?;
    let page = state.store.list_files(project, after, limit).await?;
    let data: Vec<FileView> = page.items.into_iter().map(FileView::new).collect();
    Ok(Json(ListView {
        object: "list",
        first_id: data.first().map(|f| f.id.to_string()),
        last_id: data.last().map(|f| f.id.to_string()),
        data,
        has_more: page.has_more,
    }))
}

pub(super) async fn get_file(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<FileView>, ApiError> {
    let project = principal.require_project()?;
    Ok(Json(FileView::new(load(&state, project, &id).await?)))
}

/// The bytes, one stored chunk at a time.
pub(super) async fn content(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let project = principal.require_project()?;
    let file = load(&state, project, &id).await?;
    let store = std::sync::Arc::clone(&state.store);
    let chunks = futures_util::stream::unfold(Some(0u32), move |seq| {
        let store = std::sync::Arc::clone(&store);
        async move {
            let seq = seq?;
            match store.file_chunk(file.id, seq).await {
                Ok(Some(chunk)) => Some((Ok::<Bytes, std::io::Error>(chunk), Some(seq + 1))),
                Ok(None) => None,
                // The status line is sent: all that is left is to cut the body short.
                Err(error) => Some((Err(std::io::Error::other(error.to_string())), None)),
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes));
    Ok(response)
}

#[derive(Serialize)]
pub(super) struct Deleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

pub(super) async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Deleted>, ApiError> {
    let project = principal.require_project()?;
    if !state.store.delete_file(project, file_id(&id)?).await? {
        return Err(ApiError::not_found("file", &id));
    }
    Ok(Json(Deleted {
        id,
        object: "file",
        deleted: true,
    }))
}
