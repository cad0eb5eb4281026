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
    due_at      INTEGER,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);

CREATE INDEX operations_by_project ON operations (project_id, id);
CREATE INDEX operations_due ON operations (due_at) WHERE due_at IS NOT NULL;

-- Herald's own signing keys (per-job webhooks, JWKS). `private_key` is
-- stored through the one seal/open seam (`store::sealing`). A key with
-- `retire_time` NULL is its algorithm's current signer; a rotated-out key
-- keeps being published (and, for Ed25519, signing) until `retire_time`.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    retire_time INTEGER
);
-- At most one current key per algorithm, whichever node creates it.
CREATE UNIQUE INDEX signing_keys_current ON signing_keys (algorithm) WHERE retire_time IS NULL;

-- Per-job webhooks are webhook rows marked with the job that created them
-- (`job_id`): delivered by the same engine, never listed with the
-- project's webhooks nor matched by the project's fan-out (every query on
-- project webhooks says `job_id IS NULL`). Later jobs of the project with
-- the same URI and signature format share the enabled row.
ALTER TABLE webhooks ADD COLUMN job_id TEXT;
CREATE INDEX webhooks_job_endpoints ON webhooks (project_id, uri) WHERE job_id IS NOT NULL AND delete_time IS NULL;
