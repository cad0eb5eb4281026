-- Herald schema, version 1. Instants are integer milliseconds since the
-- Unix epoch; ids are prefixed ULIDs (time-ordered text).

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    create_time INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    name        TEXT,
    key_prefix  TEXT NOT NULL,
    -- SHA-256 of the key: keys are 256-bit random, so a fast hash suffices.
    key_hash    BLOB NOT NULL UNIQUE,
    create_time INTEGER NOT NULL,
    revoke_time INTEGER
);
CREATE INDEX api_keys_by_project ON api_keys(project_id, id);

CREATE TABLE webhooks (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects(id),
    name              TEXT NOT NULL,
    uri               TEXT NOT NULL,
    -- JSON array of patterns ("*", "batch.*", "batch.succeeded").
    subscribed_events TEXT NOT NULL,
    state             TEXT NOT NULL,   -- enabled | disabled | disabled_due_to_failed_deliveries
    state_reason      TEXT,
    signing           TEXT NOT NULL,   -- hmac | ed25519
    create_time       INTEGER NOT NULL,
    update_time       INTEGER NOT NULL,
    delete_time       INTEGER,
    -- Scheduling hint: no unfinished delivery of this webhook is due before
    -- this instant; NULL when it has none. Lowered on every insert or retry,
    -- recomputed exactly after each claim. Lets the claim visit only
    -- webhooks with due work, so one webhook's backlog never stands in front
    -- of another's.
    next_due_at       INTEGER
);
CREATE INDEX webhooks_by_project ON webhooks(project_id, id) WHERE delete_time IS NULL;
CREATE INDEX webhooks_due ON webhooks(next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE webhook_secrets (
    id          TEXT PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id),
    kind        TEXT NOT NULL,   -- hmac | ed25519
    secret      TEXT NOT NULL,   -- whsec_… or whsk_…
    public_key  TEXT,            -- whpk_… for ed25519
    display     TEXT NOT NULL,   -- what the API shows
    create_time INTEGER NOT NULL,
    expire_time INTEGER          -- NULL: signs until rotated away
);
CREATE INDEX webhook_secrets_by_webhook ON webhook_secrets(webhook_id);

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id),
    type        TEXT NOT NULL,
    timestamp   INTEGER NOT NULL,
    -- The exact bytes every attempt sends, serialised once at publish.
    payload     BLOB NOT NULL
);

-- One row per (event, webhook). The hot part of the queue is the rows with
-- next_attempt_at set; finished rows leave the partial index.
CREATE TABLE deliveries (
    id              TEXT PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id),
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id),
    project_id      TEXT NOT NULL,
    event_time      INTEGER NOT NULL,  -- copy of events.timestamp: the retry window starts here
    state           TEXT NOT NULL,     -- pending | leased | succeeded | failed
    -- Finished attempts (including ones logged as interrupted).
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    -- pending: when due; leased: when the lease expires; finished: NULL.
    next_attempt_at INTEGER,
    lease_token     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    create_time     INTEGER NOT NULL,
    finish_time     INTEGER
) WITHOUT ROWID;
CREATE INDEX deliveries_by_event ON deliveries(event_id);
-- Covers the claim (per webhook, oldest due first) and the queue statistics.
CREATE INDEX deliveries_due ON deliveries(webhook_id, next_attempt_at, state, attempt_count)
    WHERE next_attempt_at IS NOT NULL;

CREATE TABLE attempts (
    delivery_id      TEXT NOT NULL,
    attempt_number   INTEGER NOT NULL,
    start_time       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    status_code      INTEGER,
    response_excerpt TEXT,
    error_kind       TEXT,
    error_message    TEXT,
    PRIMARY KEY (delivery_id, attempt_number)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    project_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    response     BLOB NOT NULL,
    create_time  INTEGER NOT NULL,
    PRIMARY KEY (project_id, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_time ON idempotency_keys(create_time);
