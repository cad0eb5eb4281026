//! What publishing and subscribing ask of the event-type registry: is this
//! type known, and does this `data` satisfy its schema?
//!
//! Answers come from a per-node cache of compiled schemas (per project and
//! type) and strict-mode flags (per project), so a publish compiles no
//! schema and, while an entry is fresh, reads nothing from the store.
//!
//! Staleness policy: this node drops an entry as soon as it changes it
//! (create, patch, archive, strict switch). Changes made through another
//! node (a shared database) are seen once the entry is older than [`TTL`]
//! (measured with the injected clock): at most that long, a node may
//! validate against the previous schema or strict setting. The cache is
//! bounded by [`MAX_ENTRIES`]; when full it is emptied, never grown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ApiError;
use crate::clock::SharedClock;
use crate::domain::event_type::{EventSchema, is_herald_own};
use crate::domain::{EventPattern, EventType, ProjectId, Timestamp};
use crate::store::Store;

/// How long an entry is trusted without asking the store again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries (types plus projects) held at most.
const MAX_ENTRIES: usize = 10_000;

/// What the registry says of one type.
#[derive(Clone)]
enum Known {
    /// Registered and not archived; its schema, if it has one.
    Active(Option<Arc<EventSchema>>),
    /// Never registered, or archived.
    Unknown,
}

struct Cached<T> {
    value: T,
    loaded_at: Timestamp,
}

pub struct EventTypeGate {
    clock: SharedClock,
    types: Mutex<HashMap<(ProjectId, String), Cached<Known>>>,
    strict: Mutex<HashMap<ProjectId, Cached<bool>>>,
    /// Bumped by every forget: a lookup that read the store before a
    /// forget does not cache what it read (it may predate the change).
    generation: AtomicU64,
}

impl EventTypeGate {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            types: Mutex::new(HashMap::new()),
            strict: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Refuses an event of `event_type` whose `data` (JSON text) breaks the
    /// type's schema, or, in strict mode, whose type is not registered.
    /// `prefix` is `""` for a single publish, `events[i].` in a batch.
    pub async fn check_publish(
        &self,
        store: &dyn Store,
        project: ProjectId,
        event_type: &EventType,
        data: &str,
        prefix: &str,
    ) -> Result<(), ApiError> {
        if is_herald_own(event_type.as_str()) {
            return Ok(());
        }
        match self.known(store, project, event_type).await? {
            Known::Active(None) => Ok(()),
            Known::Active(Some(schema)) => {
                let value: serde_json::Value = serde_json::from_str(data)
                    .map_err(|e| ApiError::invalid(format!("{prefix}data"), format!("not valid JSON: {e}")))?;
                schema.check(&value, &format!("{prefix}data")).map_err(|violations| {
                    let first = &violations[0];
                    let rest: Vec<String> = violations[1..]
                        .iter()
                        .map(|v| format!("{}: {}", v.path, v.rule))
                        .collect();
                    let mut message = format!(
                        "does not match the schema of event type {}: {}",
                        event_type.as_str(),
                        first.rule
                    );
                    if !rest.is_empty() {
                        message.push_str(&format!(" (also {})", rest.join("; ")));
                    }
                    ApiError::invalid(first.path.clone(), message)
                })
            }
            Known::Unknown if self.strict(store, project).await? => Err(ApiError::invalid(
                format!("{prefix}type"),
                format!(
                    "{} is not a registered event type, and this project accepts only registered types \
                     (strict mode): register it with POST /v1/event_types",
                    event_type.as_str()
                ),
            )),
            Known::Unknown => Ok(()),
        }
    }

    /// In strict mode, refuses a subscription naming an exact type that is
    /// not registered (`subscribed_events[i]`). Wildcards (`*`, `order.*`)
    /// are always accepted: they may name types registered later.
    pub async fn check_subscription(
        &self,
        store: &dyn Store,
        project: ProjectId,
        items: &[String],
    ) -> Result<(), ApiError> {
        if !self.strict(store, project).await? {
            return Ok(());
        }
        for (index, item) in items.iter().enumerate() {
            let Ok(EventPattern::Exact(event_type)) = EventPattern::parse(item) else {
                continue;
            };
            if is_herald_own(event_type.as_str()) {
                continue;
            }
            if let Known::Unknown = self.known(store, project, &event_type).await? {
                return Err(ApiError::invalid(
                    format!("subscribed_events[{index}]"),
                    format!(
                        "{} is not a registered event type, and this project accepts only registered types \
                         (strict mode): register it with POST /v1/event_types, or subscribe with a wildcard",
                        event_type.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Forgets what this node knew of a type (after it changed here).
    pub fn forget_type(&self, project: ProjectId, event_type: &EventType) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut types) = self.types.lock() {
            types.remove(&(project, event_type.as_str().to_owned()));
        }
    }

    /// Forgets a project's strict flag (after it changed here).
    pub fn forget_strict(&self, project: ProjectId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut strict) = self.strict.lock() {
            strict.remove(&project);
        }
    }

    fn fresh<T: Clone>(&self, cached: Option<&Cached<T>>) -> Option<T> {
        let now = self.clock.now();
        cached
            .filter(|c| now < c.loaded_at.saturating_add(TTL) && now >= c.loaded_at)
            .map(|c| c.value.clone())
    }

    async fn known(&self, store: &dyn Store, project: ProjectId, event_type: &EventType) -> Result<Known, ApiError> {
        let key = (project, event_type.as_str().to_owned());
        if let Some(known) = self.types.lock().ok().and_then(|types| self.fresh(types.get(&key))) {
            return Ok(known);
        }
        let loaded_at = self.clock.now();
        let generation = self.generation.load(Ordering::SeqCst);
        let record = store.get_event_type(project, event_type.clone()).await?;
        let known = match record.filter(|r| r.archive_time.is_none()) {
            None => Known::Unknown,
            Some(record) => match record.schema.as_deref() {
                None => Known::Active(None),
                Some(text) => Known::Active(Some(Arc::new(EventSchema::from_stored(text).map_err(|e| {
                    ApiError::Internal(format!(
                        "the stored schema of event type {} does not compile: {}",
                        event_type.as_str(),
                        e.message
                    ))
                })?))),
            },
        };
        if let Ok(mut types) = self.types.lock()
            && generation == self.generation.load(Ordering::SeqCst)
        {
            if types.len() >= MAX_ENTRIES {
                types.clear();
            }
            types.insert(
                key,
                Cached {
                    value: known.clone(),
                    loaded_at,
                },
            );
        }
        Ok(known)
    }

    async fn strict(&self, store: &dyn Store, project: ProjectId) -> Result<bool, ApiError> {
        if let Some(strict) = self.strict.lock().ok().and_then(|s| self.fresh(s.get(&project))) {
            return Ok(strict);
        }
        let loaded_at = self.clock.now();
        let generation = self.generation.load(Ordering::SeqCst);
        let strict = store.strict_event_types(project).await?;
        if let Ok(mut cache) = self.strict.lock()
            && generation == self.generation.load(Ordering::SeqCst)
        {
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(
                project,
                Cached {
                    value: strict,
                    loaded_at,
                },
            );
        }
        Ok(strict)
    }
}
