-- Expired refresh tokens are purged (Store.purge_refresh_tokens): find them without a scan.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires);
