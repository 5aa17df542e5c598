-- Roost schema, version 5: a refresh grant whose answer was lost can be retried.
-- parent: the token this one was rotated from (NULL: a login's first, or issued before).
-- used_at: when the token was exchanged; NULL while unused, and for a used token that was used
-- before this version or retired (a successor that was never delivered, replaced in a retry):
-- presenting either of those again is a reuse, never a retry.
ALTER TABLE refresh_tokens ADD COLUMN parent TEXT;
ALTER TABLE refresh_tokens ADD COLUMN used_at INTEGER;
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent);
