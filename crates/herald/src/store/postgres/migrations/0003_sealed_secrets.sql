-- Version 3: signing secrets sealed at rest (see domain::secret).
-- `sealed` is XChaCha20-Poly1305 output under the master key `key_id`,
-- bound to (webhook_id, id). A row with `key_id` NULL is a plaintext row
-- from before this version: a node seals it at start and sets `secret`
-- to NULL.
ALTER TABLE webhook_secrets ALTER COLUMN secret DROP NOT NULL;
ALTER TABLE webhook_secrets ADD COLUMN key_id TEXT, ADD COLUMN sealed BYTEA;
CREATE INDEX webhook_secrets_by_key ON webhook_secrets(key_id);
-- Secrets that stop signing: found by the purge without a scan.
CREATE INDEX webhook_secrets_expiring ON webhook_secrets(expire_time) WHERE expire_time IS NOT NULL;
-- The master keys each live node holds (comma-separated ids; '' for a
-- node of an older version): a master-key rotation refuses to make a key
-- the key in force while a live node lacks it.
ALTER TABLE nodes ADD COLUMN master_key_ids TEXT NOT NULL DEFAULT '';
