-- Files (stored in chunks) and OpenAI-compatible batches with their
-- requests (leased work). See ARCHITECTURE.md, "Batches".

CREATE TABLE files (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL DEFAULT 0,
    -- 0 while uploading (invisible), 1 once complete.
    ready INTEGER NOT NULL DEFAULT 0,
    create_time INTEGER NOT NULL
);
CREATE INDEX files_by_project ON files (project_id, id) WHERE ready = 1;

CREATE TABLE file_chunks (
    file_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (file_id, seq)
);

CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completion_window_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    sequence INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    errors TEXT,
    metadata TEXT NOT NULL,
    output_file_id TEXT,
    error_file_id TEXT,
    -- The validation lease (validating batches only).
    lease_token INTEGER,
    lease_until INTEGER,
    -- Finishing, in pieces: how the batch ends, the last line written to
    -- its result files, and each file's next chunk and size so far.
    finish_kind TEXT,
    finish_line INTEGER NOT NULL DEFAULT 0,
    output_seq INTEGER NOT NULL DEFAULT 0,
    error_seq INTEGER NOT NULL DEFAULT 0,
    output_bytes INTEGER NOT NULL DEFAULT 0,
    error_bytes INTEGER NOT NULL DEFAULT 0,
    -- The last batch.progress event: when, and the finished count it announced.
    progress_at INTEGER,
    progress_done INTEGER NOT NULL DEFAULT 0,
    -- When a claim last took requests from it (round robin between batches).
    last_claim_at INTEGER NOT NULL DEFAULT 0,
    -- Reserved for per-batch webhook targets (webhook_config); unused yet.
    webhook_config TEXT,
    created_at INTEGER NOT NULL,
    in_progress_at INTEGER,
    expires_at INTEGER NOT NULL,
    finalizing_at INTEGER,
    completed_at INTEGER,
    failed_at INTEGER,
    expired_at INTEGER,
    cancelling_at INTEGER,
    cancelled_at INTEGER
);
CREATE INDEX batches_by_project ON batches (project_id, id);
CREATE INDEX batches_active ON batches (status, last_claim_at)
    WHERE status IN ('validating', 'in_progress', 'cancelling');

-- state: 0 pending, 1 leased (next_attempt_at = lease expiry), 2 done.
CREATE TABLE batch_requests (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    upstream TEXT NOT NULL,
    body BLOB NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_token INTEGER,
    result BLOB,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line)
);
CREATE UNIQUE INDEX batch_requests_custom_id ON batch_requests (batch_id, custom_id);
CREATE INDEX batch_requests_due ON batch_requests (batch_id, upstream, next_attempt_at, line) WHERE state < 2;
