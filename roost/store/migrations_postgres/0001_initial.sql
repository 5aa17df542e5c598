-- Roost schema on PostgreSQL, version 1: everything the SQLite schema holds at its version 9, in
-- one step. Timestamps are bigint milliseconds since the epoch. JSON values are kept as ``json``
-- (their text as written: key order and number spelling survive, as in SQLite); configs likewise.
-- Text columns sort and match byte-wise (COLLATE "C"), as SQLite does, whatever the database's
-- locale: lists come out in the same order on both stores.

CREATE TABLE schema_version (
    version integer PRIMARY KEY,
    applied bigint NOT NULL
);

CREATE TABLE users (
    name          text COLLATE "C" PRIMARY KEY,
    password_hash text COLLATE "C" NOT NULL,
    role          text COLLATE "C" NOT NULL CHECK (role IN ('admin', 'user')),
    created       bigint NOT NULL,
    enabled       boolean NOT NULL DEFAULT true
);

CREATE TABLE devices (
    owner            text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    device           text COLLATE "C" NOT NULL,
    name             text COLLATE "C" NOT NULL,
    description      text COLLATE "C" NOT NULL,
    type             text COLLATE "C" NOT NULL,
    credentials_hash text COLLATE "C",
    enabled          boolean NOT NULL,
    created          bigint NOT NULL,
    modified         bigint NOT NULL,
    last_connection  bigint,
    PRIMARY KEY (owner, device)
);

-- resources: a JSON array of resource names, or NULL for every resource of the device.
CREATE TABLE device_tokens (
    id        text COLLATE "C" PRIMARY KEY,
    owner     text COLLATE "C" NOT NULL,
    device    text COLLATE "C" NOT NULL,
    name      text COLLATE "C" NOT NULL,
    resources text COLLATE "C",
    expires   bigint,
    created   bigint NOT NULL,
    FOREIGN KEY (owner, device) REFERENCES devices (owner, device) ON DELETE CASCADE
);
CREATE INDEX device_tokens_by_device ON device_tokens (owner, device, created);

-- used: exchanged once; used_at: when (NULL for a retired successor or a retried token);
-- revoked: its family was revoked (reuse or logout).
CREATE TABLE refresh_tokens (
    jti       text COLLATE "C" PRIMARY KEY,
    user_name text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    family    text COLLATE "C" NOT NULL,
    issued    bigint NOT NULL,
    expires   bigint NOT NULL,
    used      boolean NOT NULL DEFAULT false,
    revoked   boolean NOT NULL DEFAULT false,
    parent    text COLLATE "C",
    used_at   bigint
);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_name);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires);
CREATE INDEX refresh_tokens_by_parent ON refresh_tokens (parent);

CREATE TABLE access_tokens (
    owner       text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    token       text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    description text COLLATE "C" NOT NULL,
    enabled     boolean NOT NULL,
    allow       json NOT NULL,
    deny        json NOT NULL,
    expire      bigint,
    created     bigint NOT NULL,
    modified    bigint NOT NULL,
    nonce       text COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (owner, token)
);

CREATE TABLE device_properties (
    owner       text COLLATE "C" NOT NULL,
    device      text COLLATE "C" NOT NULL,
    property    text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    description text COLLATE "C" NOT NULL,
    type        text COLLATE "C" NOT NULL,
    value       json NOT NULL,
    created     bigint NOT NULL,
    modified    bigint NOT NULL,
    PRIMARY KEY (owner, device, property),
    FOREIGN KEY (owner, device) REFERENCES devices (owner, device) ON DELETE CASCADE
);

-- retention: NULL (keep every point) or {"period": n, "unit": "hours"|...|"years"}.
CREATE TABLE buckets (
    owner       text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    bucket      text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    description text COLLATE "C" NOT NULL,
    enabled     boolean NOT NULL,
    config      json NOT NULL,
    retention   json,
    created     bigint NOT NULL,
    modified    bigint NOT NULL,
    PRIMARY KEY (owner, bucket)
);

-- Points are clustered by their primary key (owner, bucket, ts): a time-range read, the
-- aggregation of a window and a retention delete each walk one contiguous range of the index
-- (docs/design.md, "PostgreSQL store", says why this and not time partitions).
CREATE TABLE bucket_points (
    owner  text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL,
    ts     bigint NOT NULL,
    value  json NOT NULL,
    PRIMARY KEY (owner, bucket, ts),
    FOREIGN KEY (owner, bucket) REFERENCES buckets (owner, bucket) ON DELETE CASCADE
);

CREATE TABLE endpoints (
    owner       text COLLATE "C" NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    endpoint    text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    description text COLLATE "C" NOT NULL,
    enabled     boolean NOT NULL,
    type        text COLLATE "C" NOT NULL,
    config      json NOT NULL,
    created     bigint NOT NULL,
    modified    bigint NOT NULL,
    PRIMARY KEY (owner, endpoint)
);
