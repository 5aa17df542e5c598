"""Devices' bucket writes (legacy flag 10 BUCKET_DATA, IOTMP service 5 WRITE_BUCKET): a point
stored, at the server's time of arrival, into a bucket of the device's own user.

The bucket must exist, be enabled and take device writes (``config.source`` ``write``, as
Thinger's docs ask of a bucket devices write to: thinger-api.md 2.10). :func:`write_many` answers
only once the points are committed, so the confirmation a device asks for (a stream id) means its
point is stored; every refusal comes back as a reason, so a device that waits never hangs. The
writes a device sent together (one read of its connection, :class:`roost.net.bucket_writes.
BucketWrites`) go to the store as one write per bucket; the store commits the writes of every
device queued meanwhile together (:mod:`roost.store.group_commit`). How many writes a device may
have under way is bounded by the frames it may send unasked (``device_frame_rate``,
roost.net.flow), as each write is one such frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from roost import ids
from roost.bus.base import DeviceKey
from roost.errors import Conflict, InvalidInput, NotFound
from roost.store import Store
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.devices.buckets")

NOT_JSON = "the data cannot be stored as JSON"
STORE_FAILED = "the server could not store the data"


async def write(
    store: Store, device: DeviceKey, bucket: PsonValue, value: PsonValue, now: int
) -> str | None:
    """Stores ``value`` at ``now`` (ms) into ``device``'s user's ``bucket``: None once committed,
    else why it was refused."""
    (refused,) = await write_many(store, device, [(bucket, value)], now)
    return refused


async def write_many(
    store: Store, device: DeviceKey, writes: Sequence[tuple[PsonValue, PsonValue]], now: int
) -> list[str | None]:
    """Stores each ``(bucket, value)`` at ``now`` (ms), or the first free ms after it (writes
    faster than one a ms keep every point, in order), into ``device``'s user's buckets: for each
    write in order, None once committed, else why it was refused."""
    outcomes: list[str | None] = [None] * len(writes)
    by_bucket: dict[str, list[int]] = {}
    for index, (bucket, value) in enumerate(writes):
        if not ids.BUCKET.matches(bucket):
            outcomes[index] = "the bucket must be a bucket id"
        elif value is None:
            outcomes[index] = "a bucket write needs data"
        else:
            assert isinstance(bucket, str)  # matches checked it
            by_bucket.setdefault(bucket, []).append(index)
    jobs = [
        _write_bucket(store, device, bucket, [writes[i][1] for i in indexes], now)
        for bucket, indexes in by_bucket.items()
    ]
    # one bucket, the usual case: no task (its failure is the caller's to answer)
    if len(jobs) == 1:
        results: list[list[str | None] | BaseException] = [await jobs[0]]
    else:  # a bucket whose store write failed does not make the others' committed ones fail
        results = list(await asyncio.gather(*jobs, return_exceptions=True))
    for (bucket, indexes), refusals in zip(by_bucket.items(), results, strict=True):
        if isinstance(refusals, BaseException):
            if not isinstance(refusals, Exception):
                raise refusals
            log.error("device %s: bucket %s writes failed", device, bucket, exc_info=refusals)
            refusals = [STORE_FAILED] * len(indexes)
        for index, refused in zip(indexes, refusals, strict=True):
            outcomes[index] = refused
    return outcomes


async def _write_bucket(
    store: Store, device: DeviceKey, bucket: str, values: list[PsonValue], now: int
) -> list[str | None]:
    """``values`` into ``bucket``, in one store write: for each, None or why refused."""
    record = await store.get_bucket(device.owner, bucket)
    refused: str | None = None
    if record is None:
        refused = f"no bucket {bucket!r}"
    elif not record.enabled:
        refused = f"bucket {bucket!r} is disabled"
    elif record.config.get("source") != "write":
        refused = f"bucket {bucket!r} does not take device writes (its source is not write)"
    if refused is not None:
        return [refused] * len(values)
    try:
        await store.write_points(device.owner, bucket, [(now, v) for v in values], replace=False)
    except NotFound:  # deleted meanwhile
        refused = f"no bucket {bucket!r}"
    except Conflict as exc:
        refused = exc.message
    except (InvalidInput, TypeError, ValueError) as exc:  # bytes, NaN, a number beyond 64 bits
        if len(values) > 1:  # one of them: each on its own, so that the others are stored
            return [(await _write_bucket(store, device, bucket, [v], now))[0] for v in values]
        log.debug("device %s: bucket %s write not storable: %s", device, bucket, exc)
        refused = NOT_JSON
    return [refused] * len(values)
