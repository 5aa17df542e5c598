"""Devices' bucket writes (legacy flag 10 BUCKET_DATA, IOTMP service 5 WRITE_BUCKET): a point
stored, at the server's time of arrival, into a bucket of the device's own user.

The bucket must exist, be enabled and take device writes (``config.source`` ``write``, as
Thinger's docs ask of a bucket devices write to: thinger-api.md 2.10). :func:`write` answers only
once the point is committed, so the confirmation a device asks for (a stream id) means its point
is stored; every refusal comes back as a reason, so a device that waits never hangs. How many
writes a device may have under way is bounded by the frames it may send unasked
(``device_frame_rate``, roost.net.flow), as each write is one such frame.
"""

from __future__ import annotations

import logging

from roost import ids
from roost.bus.base import DeviceKey
from roost.errors import Conflict, InvalidInput, NotFound
from roost.store import Store
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.devices.buckets")


async def write(
    store: Store, device: DeviceKey, bucket: PsonValue, value: PsonValue, now: int
) -> str | None:
    """Stores ``value`` at ``now`` (ms) into ``device``'s user's ``bucket``: None once committed,
    else why it was refused."""
    if not ids.BUCKET.matches(bucket):
        return "the bucket must be a bucket id"
    assert isinstance(bucket, str)  # matches checked it
    if value is None:
        return "a bucket write needs data"
    record = await store.get_bucket(device.owner, bucket)
    if record is None:
        return f"no bucket {bucket!r}"
    if not record.enabled:
        return f"bucket {bucket!r} is disabled"
    if record.config.get("source") != "write":
        return f"bucket {bucket!r} does not take device writes (its source is not write)"
    try:
        # at the first free ms from now: two writes in one ms keep both points
        await store.write_points(device.owner, bucket, [(now, value)], replace=False)
    except NotFound:  # deleted meanwhile
        return f"no bucket {bucket!r}"
    except Conflict as exc:
        return exc.message
    except (InvalidInput, TypeError, ValueError) as exc:  # bytes, NaN, a number beyond 64 bits
        log.debug("device %s: bucket %s write not storable: %s", device, bucket, exc)
        return "the data cannot be stored as JSON"
    return None
