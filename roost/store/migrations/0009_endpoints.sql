-- Roost schema, version 9: endpoints (thinger-api.md 2.11), the outgoing calls a user defines.
-- type: "http_request", "email", ... (any name; the server calls the types it knows);
-- config: the endpoint's settings as JSON (for http_request: method, url, headers, body, ...).
-- Deleting a user deletes its endpoints.

CREATE TABLE endpoints (
    owner       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    endpoint    TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    type        TEXT NOT NULL,
    config      TEXT NOT NULL,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    PRIMARY KEY (owner, endpoint)
);
