-- Endpoint health, replays (issue 8). Numbered 0005: 0004 belongs to
-- another change; both apply in file order.

-- Auto-disable counters, maintained by the completion transaction of every
-- scheduled attempt (manual attempts never touch them): failed attempts in
-- a row, and when that run of failures began. The rule that reads them is
-- `domain::health`; a user's re-enable resets them.
ALTER TABLE webhooks ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;

-- The replay that created a delivery (a copy of an earlier one), if any.
-- (A replay walks `deliveries_by_webhook (webhook_id, id)`: no new index
-- on this hot table, whose every index costs each publish.)
ALTER TABLE deliveries ADD COLUMN replay_id TEXT;

-- A replay: a durable background task that re-queues one webhook's
-- deliveries created in [since, until). It walks the webhook's deliveries
-- by id from `cursor_id` (exclusive; starts just below the ids of
-- `since`) to `scan_end` (the webhook's newest delivery when the replay
-- was created, inclusive); a restart resumes after the cursor.
CREATE TABLE replays (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    since       INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    filter      TEXT NOT NULL,      -- failed | all
    state       TEXT NOT NULL,      -- running | succeeded | failed
    cursor_id   TEXT NOT NULL,
    scan_end    TEXT NOT NULL,
    examined    INTEGER NOT NULL DEFAULT 0,
    requeued    INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    finish_time INTEGER
) WITHOUT ROWID;
CREATE INDEX replays_by_project ON replays(project_id, id);
CREATE INDEX replays_running ON replays(update_time) WHERE state = 'running';
CREATE INDEX replays_by_webhook ON replays(webhook_id) WHERE state = 'running';

-- Per-webhook statistics: attempts per minute, outcome (`success` or the
-- error kind) and latency bucket (`domain::stats`), added to by the
-- completion transaction. `GET /v1/webhooks/{id}/stats` reads at most a
-- day of one webhook's rows through the primary key.
CREATE TABLE webhook_stats (
    webhook_id TEXT NOT NULL,
    minute     INTEGER NOT NULL,   -- minutes since the epoch
    outcome    TEXT NOT NULL,
    bucket     INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, minute, outcome, bucket)
) WITHOUT ROWID;
CREATE INDEX webhook_stats_by_minute ON webhook_stats(minute);

-- Retention walks events oldest first.
CREATE INDEX events_by_time ON events(timestamp, id);
