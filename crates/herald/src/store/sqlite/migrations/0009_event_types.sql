-- Event types (issue 8): a project's registry of the event types it
-- publishes, each with an optional JSON Schema for `data` (stored as the
-- producer's JSON text; compiled and checked in Rust, never in SQL).
-- Deleting a type archives it (`archive_time` set); an archived name
-- can be created again, which brings the row back with the new fields.
CREATE TABLE event_types (
    project_id   TEXT NOT NULL REFERENCES projects(id),
    name         TEXT NOT NULL,
    description  TEXT,
    schema       TEXT,
    archive_time INTEGER,
    create_time  INTEGER NOT NULL,
    update_time  INTEGER NOT NULL,
    PRIMARY KEY (project_id, name)
);

-- A project's strict mode: unknown or archived types are refused at
-- publish and at subscribe time. No row means off.
CREATE TABLE event_type_settings (
    project_id TEXT PRIMARY KEY REFERENCES projects(id),
    strict     INTEGER NOT NULL
);
