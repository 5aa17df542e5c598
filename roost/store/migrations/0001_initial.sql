-- Roost schema, version 1. Timestamps are integer milliseconds since the epoch; booleans are 0/1.

CREATE TABLE schema_version (
    version INTEGER PRIMARY KEY,
    applied INTEGER NOT NULL
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created       INTEGER NOT NULL
);

CREATE TABLE devices (
    owner            TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    device           TEXT NOT NULL,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL,
    type             TEXT NOT NULL,
    credentials_hash TEXT,
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created          INTEGER NOT NULL,
    modified         INTEGER NOT NULL,
    last_connection  INTEGER,
    PRIMARY KEY (owner, device)
);

-- resources: a JSON array of resource names, or NULL for every resource of the device.
CREATE TABLE device_tokens (
    id        TEXT PRIMARY KEY,
    owner     TEXT NOT NULL,
    device    TEXT NOT NULL,
    name      TEXT NOT NULL,
    resources TEXT,
    expires   INTEGER,
    created   INTEGER NOT NULL,
    FOREIGN KEY (owner, device) REFERENCES devices (owner, device) ON DELETE CASCADE
);

CREATE INDEX device_tokens_by_device ON device_tokens (owner, device, created);

-- used: the token was exchanged once; revoked: its family was revoked (reuse or logout).
CREATE TABLE refresh_tokens (
    jti       TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    family    TEXT NOT NULL,
    issued    INTEGER NOT NULL,
    expires   INTEGER NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    revoked   INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);

CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_name);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
