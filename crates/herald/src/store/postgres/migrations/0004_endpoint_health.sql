-- Endpoint health, replays (issue 8). Numbered 0004: 0003 belongs to
-- another change; both apply in file order. See the SQLite migration.
ALTER TABLE webhooks ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN failing_since BIGINT;

ALTER TABLE deliveries ADD COLUMN replay_id TEXT;

CREATE TABLE replays (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    since       BIGINT NOT NULL,
    until       BIGINT NOT NULL,
    filter      TEXT NOT NULL,
    state       TEXT NOT NULL,
    cursor_id   TEXT NOT NULL,
    scan_end    TEXT NOT NULL,
    examined    BIGINT NOT NULL DEFAULT 0,
    requeued    BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    finish_time BIGINT
);
CREATE INDEX replays_by_project ON replays(project_id, id);
CREATE INDEX replays_running ON replays(update_time) WHERE state = 'running';
CREATE INDEX replays_by_webhook ON replays(webhook_id) WHERE state = 'running';

CREATE TABLE webhook_stats (
    webhook_id TEXT NOT NULL,
    minute     BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, minute, outcome, bucket)
);
CREATE INDEX webhook_stats_by_minute ON webhook_stats(minute);

CREATE INDEX events_by_time ON events(timestamp, id);
