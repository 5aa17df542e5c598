"""Server events (thinger-api.md 2.19): the names Roost emits, one helper per event to build it,
their filters (:data:`CATALOGUE`); who listens for them is :mod:`roost.bus.listeners`.

A feature that has something to announce publishes it on the bus in one line, e.g.
``services.bus.publish(events.bucket_export_completed(user, bucket, ts, file=f, ...))``. The
local bus delivers it here at once; a NATS bus will publish it on a subject
(``roost.events.<user>``) and deliver what it receives here, on every node alike. The events
WebSocket (:mod:`roost.api.events`) and ``GET /v1/server/events`` read the catalogue below.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from roost.bus.base import DeviceKey, Event, Stats
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.bus")

DEVICE_STATE_CHANGE = "device_state_change"
DEVICE_PROPERTY_UPDATE = "device_property_update"
BUCKET_EXPORT_COMPLETED = "bucket_export_completed"
ENDPOINT_CALL_RESPONSE = "endpoint_call_response"

CONNECTED, DISCONNECTED = "connected", "disconnected"

# carried like the others, but not a server event of the catalogue: a device's stats changed
# (connect, disconnect, traffic), published only while a stats stream watches it (Bus.watch_stats)
DEVICE_STATS = "device_stats"

# every event Roost emits: its filters (fields a subscription may match), each with its hints
CATALOGUE: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        DEVICE_STATE_CHANGE: {"device": (), "state": (CONNECTED, DISCONNECTED)},
        DEVICE_PROPERTY_UPDATE: {"device": (), "property": ()},
        BUCKET_EXPORT_COMPLETED: {"bucket": ()},
        ENDPOINT_CALL_RESPONSE: {"endpoint": ()},
    }
)


def device_state_change(key: DeviceKey, connected: bool, ts: int) -> Event:
    """A device connected or disconnected (``ts``: when, in ms)."""
    state = CONNECTED if connected else DISCONNECTED
    return Event(key.owner, DEVICE_STATE_CHANGE, {"device": key.device, "state": state, "ts": ts})


def device_stats(key: DeviceKey, stats: Stats) -> Event:
    """The device's stats now: what its stats streams send (not in :data:`CATALOGUE`)."""
    return Event(key.owner, DEVICE_STATS, {"device": key.device, **stats.to_json()})


def device_property_update(key: DeviceKey, prop: str, value: PsonValue, ts: int) -> Event:
    """A device property was created or changed (by the API or by the device)."""
    fields: dict[str, PsonValue] = {"device": key.device, "property": prop, "value": value}
    return Event(key.owner, DEVICE_PROPERTY_UPDATE, {**fields, "ts": ts})


def bucket_export_completed(user: str, bucket: str, ts: int, **fields: PsonValue) -> Event:
    """An export is written; ``fields``: ``file``, ``data_type``, ``timestamp_format``,
    ``min_ts``, ``max_ts``, ``url`` (thinger-api.md 2.10)."""
    return Event(user, BUCKET_EXPORT_COMPLETED, {"bucket": bucket, **fields, "ts": ts})


def endpoint_call_response(user: str, endpoint: str, ts: int, **fields: PsonValue) -> Event:
    """An endpoint call was delivered or given up; ``fields``: its result (status, body, ...)."""
    return Event(user, ENDPOINT_CALL_RESPONSE, {"endpoint": endpoint, **fields, "ts": ts})
