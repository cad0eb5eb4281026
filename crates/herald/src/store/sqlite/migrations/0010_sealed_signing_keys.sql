-- Herald's own private signing keys are sealed under the master key, as
-- webhook secrets are: `key_id` names the master key that sealed the row,
-- `sealed` holds version, nonce, ciphertext and tag, and `private_key` is
-- emptied. Rows from before (`plain:<key>`, no `key_id`) are sealed at
-- start, not here: a migration holds no master key.
ALTER TABLE signing_keys ADD COLUMN key_id TEXT;
ALTER TABLE signing_keys ADD COLUMN sealed BLOB;
