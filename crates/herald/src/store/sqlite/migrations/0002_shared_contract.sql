-- Version 2: what the shared store contract needs.

-- Leased deliveries per webhook, to hold the per-endpoint cap in the claim.
-- Tiny: only deliveries in flight are in it.
CREATE INDEX deliveries_leased ON deliveries(webhook_id, next_attempt_at) WHERE state = 'leased';

-- Settings shared by everything that uses this database (the admin key's hash).
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
