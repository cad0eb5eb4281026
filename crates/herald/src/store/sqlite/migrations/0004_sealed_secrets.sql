-- Version 4: signing secrets sealed at rest (see domain::secret).
-- `sealed` is XChaCha20-Poly1305 output under the master key `key_id`,
-- bound to (webhook_id, id). A row with `key_id` NULL is a plaintext row
-- from before this version: Herald seals it at its next start and then
-- blanks `secret` (which stays NOT NULL, so it holds '' from then on).
ALTER TABLE webhook_secrets ADD COLUMN key_id TEXT;
ALTER TABLE webhook_secrets ADD COLUMN sealed BLOB;
CREATE INDEX webhook_secrets_by_key ON webhook_secrets(key_id);
-- Secrets that stop signing: found by the purge without a scan.
CREATE INDEX webhook_secrets_expiring ON webhook_secrets(expire_time) WHERE expire_time IS NOT NULL;
