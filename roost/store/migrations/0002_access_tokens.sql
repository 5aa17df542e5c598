-- Roost schema, version 2: user-defined access tokens (thinger-api.md 2.13).
-- allow, deny: JSON objects in the permission grammar; expire: ms since the epoch, NULL = never.

CREATE TABLE access_tokens (
    owner       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    token       TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    allow       TEXT NOT NULL,
    deny        TEXT NOT NULL,
    expire      INTEGER,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    PRIMARY KEY (owner, token)
);
