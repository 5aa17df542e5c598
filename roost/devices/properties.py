"""Device properties (thinger-api.md 2.8): the rules of a property's value, and the answers to a
device reading or writing its own properties (legacy flags 11/12, IOTMP services 1/2).

A value is any JSON value that a device can be sent back in one frame: its JSON text is at most
``max_frame_bytes`` bytes, and it is one PSON can carry (integers within 64 bits, text that is
valid Unicode, nested at most as deep as the encoder goes). Binary PSON values from a device are
kept as base64 text, as the REST API shows them. A device holds at most
``max_device_properties``.

The net layer calls :func:`answer` for each such message and puts the reply on the wire; a
device reading a missing property is answered with an error at once, never left waiting.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import Callable
from typing import Any

from roost import ids
from roost.bus import events
from roost.bus.base import DeviceKey, Event
from roost.config import Settings
from roost.errors import PayloadTooLarge, RoostError
from roost.store.base import Store
from roost.wire import pson
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.devices.properties")


def json_value(value: Any) -> Any:
    """``value`` as JSON can hold it: bytes as base64 text, NaN and infinities as null."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value


def checked_value(value: Any, max_bytes: int) -> Any:
    """``value`` made JSON-safe, if a device can be sent it; InvalidInput or PayloadTooLarge."""
    value = json_value(value)
    pson.encode(value)  # InvalidInput for what PSON cannot carry
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"property value larger than {max_bytes} bytes")
    return value


async def answer(
    store: Store,
    settings: Settings,
    key: DeviceKey,
    read: bool,
    prop: PsonValue,
    value: PsonValue,
    now: int,
    publish: Callable[[Event], None],
) -> tuple[bool, PsonValue]:
    """The reply to a device reading (``read``) or setting its property ``prop``: (ok, value
    read). Refused (False) for a malformed id, a missing property, a value out of bounds or a
    device with no room left; never raises on the device's input. A value set is published as
    ``device_property_update`` with ``publish`` (the gateway's: the bus)."""
    what = "read" if read else "set"
    try:
        prop_id = ids.validate(ids.PROPERTY, prop)
        if read:
            record = await store.get_device_property(key.owner, key.device, prop_id)
            if record is None:
                log.debug("device %s: no property %r to read", key, prop_id)
                return False, None
            return True, record.value
        stored = checked_value(value, settings.max_frame_bytes)
        limit = settings.max_device_properties
        await store.set_device_property_value(key.owner, key.device, prop_id, stored, now, limit)
        publish(events.device_property_update(key, prop_id, stored, now))
        return True, None
    except RoostError as exc:  # InvalidInput, PayloadTooLarge, Conflict, NotFound
        log.debug("device %s: property %s refused: %s", key, what, exc.message)
        return False, None
