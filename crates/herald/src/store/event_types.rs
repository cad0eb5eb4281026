//! Event types: a project's registry of the types it publishes (their
//! descriptions and JSON Schemas) and its strict-mode switch.
//!
//! The store keeps rows; it never compiles or applies a schema (the API
//! compiles one before it is stored, `domain::event_type`). An archived
//! type keeps its row (`archive_time` set), is hidden from listings unless
//! asked for, and counts as unknown in strict mode.

use async_trait::async_trait;

use super::{Page, PageRequest, StoreResult};
use crate::domain::event_type::EventTypeRecord;
use crate::domain::{EventType, ProjectId, Timestamp};

/// A type to register (`create_time = update_time = now`).
#[derive(Debug, Clone)]
pub struct NewEventType {
    pub project_id: ProjectId,
    pub name: EventType,
    pub description: Option<String>,
    pub schema: Option<String>,
    pub now: Timestamp,
}

#[derive(Debug, Clone)]
pub enum CreatedEventType {
    /// Registered (or an archived row of the same name brought back with
    /// the new fields).
    Created(EventTypeRecord),
    /// An active type of that name exists.
    Exists,
    /// No such project.
    ProjectNotFound,
}

/// Which fields change: `Some(None)` clears one.
#[derive(Debug, Clone, Default)]
pub struct EventTypePatch {
    pub description: Option<Option<String>>,
    pub schema: Option<Option<String>>,
}

impl EventTypePatch {
    /// The one patch rule both backends apply (read, apply, write in one
    /// transaction).
    pub fn applied_to(&self, mut record: EventTypeRecord, now: Timestamp) -> EventTypeRecord {
        if let Some(description) = &self.description {
            record.description.clone_from(description);
        }
        if let Some(schema) = &self.schema {
            record.schema.clone_from(schema);
        }
        record.update_time = now;
        record
    }
}

#[async_trait]
pub trait EventTypeStore: Send + Sync {
    async fn create_event_type(&self, new: NewEventType) -> StoreResult<CreatedEventType>;
    /// Active or archived.
    async fn get_event_type(&self, project: ProjectId, name: EventType) -> StoreResult<Option<EventTypeRecord>>;
    /// Ordered by name; archived ones only with `show_archived`.
    async fn list_event_types(
        &self,
        project: ProjectId,
        page: PageRequest,
        show_archived: bool,
    ) -> StoreResult<Page<EventTypeRecord>>;
    /// Patches an active type; `None` if there is none of that name.
    async fn update_event_type(
        &self,
        project: ProjectId,
        name: EventType,
        patch: EventTypePatch,
        now: Timestamp,
    ) -> StoreResult<Option<EventTypeRecord>>;
    /// Archives an active type; returns whether there was one.
    async fn archive_event_type(&self, project: ProjectId, name: EventType, now: Timestamp) -> StoreResult<bool>;
    /// Switches strict mode; returns whether the project exists.
    async fn set_strict_event_types(&self, project: ProjectId, strict: bool) -> StoreResult<bool>;
    /// Off for a project that never switched it on.
    async fn strict_event_types(&self, project: ProjectId) -> StoreResult<bool>;
}
