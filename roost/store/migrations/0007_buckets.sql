-- Roost schema, version 7: data buckets (thinger-api.md 2.10) and their points.
-- config: the bucket's config as JSON ({"source": "write"|"api"|"device", ...});
-- retention: NULL (keep every point) or JSON {"period": n, "unit": "hours"|...|"years"}.
-- A point is one JSON value at one ts (ms) of one bucket: the same ts again replaces it.
-- Deleting a bucket deletes its points; deleting a user deletes its buckets.

CREATE TABLE buckets (
    owner       TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    bucket      TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    config      TEXT NOT NULL,
    retention   TEXT,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    PRIMARY KEY (owner, bucket)
);

CREATE TABLE bucket_points (
    owner  TEXT NOT NULL,
    bucket TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (owner, bucket, ts),
    FOREIGN KEY (owner, bucket) REFERENCES buckets (owner, bucket) ON DELETE CASCADE
) WITHOUT ROWID;
