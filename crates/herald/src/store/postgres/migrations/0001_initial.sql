-- Herald on PostgreSQL, schema version 1. The same model as the SQLite
-- schema: instants are BIGINT milliseconds since the Unix epoch (every node
-- takes them from its injected clock), ids are prefixed ULIDs, payloads
-- the exact bytes sent.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    create_time BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    name        TEXT,
    key_prefix  TEXT NOT NULL,
    key_hash    BYTEA NOT NULL UNIQUE,
    create_time BIGINT NOT NULL,
    revoke_time BIGINT
);
CREATE INDEX api_keys_by_project ON api_keys(project_id, id);

CREATE TABLE webhooks (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects(id),
    name              TEXT NOT NULL,
    uri               TEXT NOT NULL,
    subscribed_events TEXT NOT NULL,   -- JSON array of patterns
    state             TEXT NOT NULL,
    state_reason      TEXT,
    signing           TEXT NOT NULL,
    create_time       BIGINT NOT NULL,
    update_time       BIGINT NOT NULL,
    delete_time       BIGINT,
    -- Lower bound of the earliest unfinished delivery's due time (see the
    -- SQLite schema). The claim locks webhook rows FOR UPDATE SKIP LOCKED,
    -- so two nodes never claim for one webhook at once.
    next_due_at       BIGINT
);
CREATE INDEX webhooks_by_project ON webhooks(project_id, id) WHERE delete_time IS NULL;
CREATE INDEX webhooks_due ON webhooks(next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE webhook_secrets (
    id          TEXT PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id),
    kind        TEXT NOT NULL,
    secret      TEXT NOT NULL,
    public_key  TEXT,
    display     TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    expire_time BIGINT
);
CREATE INDEX webhook_secrets_by_webhook ON webhook_secrets(webhook_id);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    type        TEXT NOT NULL,
    timestamp   BIGINT NOT NULL,
    payload     BYTEA NOT NULL
);

CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id),
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id),
    project_id      TEXT NOT NULL,
    event_time      BIGINT NOT NULL,
    state           TEXT NOT NULL,     -- pending | leased | succeeded | failed
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,            -- pending: due; leased: lease expiry; finished: NULL
    lease_token     BIGINT,
    -- The node (process incarnation) holding the lease: a dead node's
    -- leases are ended by the survivors without waiting for expiry.
    lease_node      TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    create_time     BIGINT NOT NULL,
    finish_time     BIGINT
);
CREATE INDEX deliveries_by_event ON deliveries(event_id);
CREATE INDEX deliveries_due ON deliveries(webhook_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
-- Only deliveries in flight: the cross-node cap and failover read these.
CREATE INDEX deliveries_leased ON deliveries(webhook_id, next_attempt_at) WHERE state = 'leased';
CREATE INDEX deliveries_leased_by_node ON deliveries(lease_node) WHERE state = 'leased';

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    attempt_number   INTEGER NOT NULL,
    start_time       BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    status_code      INTEGER,
    response_excerpt TEXT,
    error_kind       TEXT,
    error_message    TEXT,
    PRIMARY KEY (delivery_id, attempt_number)
);

CREATE TABLE idempotency_keys (
    project_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    response     BYTEA NOT NULL,
    create_time  BIGINT NOT NULL,
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_by_time ON idempotency_keys(create_time);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- One row per running process. A node whose heartbeat lapses past the node
-- timeout is dead: another node deletes its row and ends its leases.
CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,   -- this incarnation
    name         TEXT NOT NULL,      -- stable across restarts
    role         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
CREATE INDEX nodes_by_name ON nodes(name);
