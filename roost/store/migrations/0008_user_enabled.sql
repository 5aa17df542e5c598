-- Roost schema, version 8: a user can be disabled by an administrator (PUT /v1/users/{user}).
-- A disabled user cannot log in; their refresh tokens are revoked when they are disabled.

ALTER TABLE users ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1));
