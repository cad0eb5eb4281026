-- Files (stored in chunks) and OpenAI-compatible batches with their
-- requests (leased work). See ARCHITECTURE.md, "Batches".

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes BIGINT NOT NULL DEFAULT 0,
    -- false while uploading (invisible), true once complete.
    ready BOOLEAN NOT NULL DEFAULT false,
    create_time BIGINT NOT NULL
);
CREATE INDEX files_by_project ON files (project_id, id) WHERE ready;

CREATE TABLE file_chunks (
    file_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (file_id, seq)
);

CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completion_window_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    sequence BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    errors TEXT,
    metadata TEXT NOT NULL,
    output_file_id TEXT,
    error_file_id TEXT,
    -- The validation lease (validating batches only).
    lease_token BIGINT,
    lease_until BIGINT,
    -- The node holding the validation lease (ended when it dies).
    lease_node TEXT,
    -- Finishing, in pieces: how the batch ends, the last line written to
    -- its result files, and each file's next chunk and size so far.
    finish_kind TEXT,
    finish_line BIGINT NOT NULL DEFAULT 0,
    output_seq BIGINT NOT NULL DEFAULT 0,
    error_seq BIGINT NOT NULL DEFAULT 0,
    output_bytes BIGINT NOT NULL DEFAULT 0,
    error_bytes BIGINT NOT NULL DEFAULT 0,
    -- The last batch.progress event: when, and the finished count it announced.
    progress_at BIGINT,
    progress_done BIGINT NOT NULL DEFAULT 0,
    -- When a claim last took requests from it (round robin between batches).
    last_claim_at BIGINT NOT NULL DEFAULT 0,
    -- Reserved for per-batch webhook targets (webhook_config); unused yet.
    webhook_config TEXT,
    created_at BIGINT NOT NULL,
    in_progress_at BIGINT,
    expires_at BIGINT NOT NULL,
    finalizing_at BIGINT,
    completed_at BIGINT,
    failed_at BIGINT,
    expired_at BIGINT,
    cancelling_at BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX batches_by_project ON batches (project_id, id);
CREATE INDEX batches_active ON batches (status, last_claim_at)
    WHERE status IN ('validating', 'in_progress', 'cancelling');

-- state: 0 pending, 1 leased (next_attempt_at = lease expiry), 2 done.
CREATE TABLE batch_requests (
    batch_id TEXT NOT NULL,
    line BIGINT NOT NULL,
    custom_id TEXT NOT NULL,
    upstream TEXT NOT NULL,
    body BYTEA NOT NULL,
    state BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_token BIGINT,
    -- The node holding the lease (ended at once when it dies or restarts).
    lease_node TEXT,
    result BYTEA,
    failed BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (batch_id, line)
);
CREATE UNIQUE INDEX batch_requests_custom_id ON batch_requests (batch_id, custom_id);
CREATE INDEX batch_requests_by_node ON batch_requests (lease_node) WHERE lease_node IS NOT NULL;
CREATE INDEX batch_requests_due ON batch_requests (batch_id, upstream, next_attempt_at, line) WHERE state < 2;
