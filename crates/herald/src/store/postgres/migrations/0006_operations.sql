-- Long-running operations (issue 10). The mutable part of an operation is
-- one JSON document (`status`, written only after the Rust state machine
-- decided it); the columns beside it are what queries filter on.
-- `due_at`: when housekeeping must look next (expiry or a worker's lease),
-- NULL once done, so the sweep's partial index holds only open operations.
CREATE TABLE operations (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    status      TEXT NOT NULL,
    due_at      BIGINT,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

CREATE INDEX operations_by_project ON operations (project_id, id);
CREATE INDEX operations_due ON operations (due_at) WHERE due_at IS NOT NULL;
