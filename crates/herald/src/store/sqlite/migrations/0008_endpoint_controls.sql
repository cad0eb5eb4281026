-- Per-endpoint controls (issue 8). Numbered 0008: 0007 belongs to another
-- change; both apply in file order. See ARCHITECTURE.md, "Per-endpoint controls".

-- NULL: no limit of that kind. The rules live in `domain::controls`.
ALTER TABLE webhooks ADD COLUMN rate_limit_per_second INTEGER;
ALTER TABLE webhooks ADD COLUMN max_concurrency INTEGER;
ALTER TABLE webhooks ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none';   -- none | fifo
-- JSON array of delays in milliseconds; NULL: the server's schedule.
ALTER TABLE webhooks ADD COLUMN retry_schedule TEXT;
-- The rate limiter's state: before this instant (microseconds since the
-- epoch) no further send is admitted; advanced by the claim transaction.
-- The scheduling hint never goes below it.
ALTER TABLE webhooks ADD COLUMN rate_next_us INTEGER;

-- A FIFO webhook's head: its oldest unfinished delivery by event time, then id.
CREATE INDEX deliveries_fifo ON deliveries(webhook_id, event_time, id) WHERE next_attempt_at IS NOT NULL;
