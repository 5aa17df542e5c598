-- Roost schema, version 6: device properties (thinger-api.md 2.8).
-- value: the property's value as JSON text; type: "" or "configuration".
-- Deleting a device deletes its properties (ON DELETE CASCADE).

CREATE TABLE device_properties (
    owner       TEXT NOT NULL,
    device      TEXT NOT NULL,
    property    TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    type        TEXT NOT NULL,
    value       TEXT NOT NULL,
    created     INTEGER NOT NULL,
    modified    INTEGER NOT NULL,
    PRIMARY KEY (owner, device, property),
    FOREIGN KEY (owner, device) REFERENCES devices (owner, device) ON DELETE CASCADE
);
