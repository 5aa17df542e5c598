"""A device connection's bucket writes, gathered per loop step.

A device that writes fast sends its writes back to back, and one read brings several. Each write
as a job of its own would cost a task apiece; here the connection hands every bucket write of
the step to :meth:`BucketWrites.add`, and at the end of the step one job stores them all
(:func:`roost.devices.buckets.write_many`: one store write per bucket) and answers each that
asked for a confirmation, once committed, through the connection's dialect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from roost.bus.base import DeviceKey
from roost.devices.buckets import STORE_FAILED, write_many
from roost.devices.gateway import DeviceGateway
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.net")

# the answer to a write that asked for one: (stream id, None if stored else why not)
Answer = Callable[[int, str | None], None]


class BucketWrites:
    __slots__ = ("_answer", "_gateway", "_key", "_pending")

    def __init__(self, gateway: DeviceGateway, key: DeviceKey, answer: Answer) -> None:
        self._gateway = gateway
        self._key = key
        self._answer = answer
        self._pending: list[tuple[PsonValue, PsonValue, int]] = []

    def add(self, bucket: PsonValue, value: PsonValue, stream_id: int) -> None:
        """A write into ``bucket``, answered on ``stream_id`` (0: no answer wanted)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._start)
        self._pending.append((bucket, value, stream_id))

    def _start(self) -> None:
        pending, self._pending = self._pending, []
        self._gateway.spawn(self._write(pending))

    async def _write(self, pending: list[tuple[PsonValue, PsonValue, int]]) -> None:
        gateway = self._gateway
        now = int(gateway.clock() * 1000)
        writes = [(bucket, value) for bucket, value, _ in pending]
        try:
            refusals = await write_many(gateway.store, self._key, writes, now)
        except Exception:  # the store failed: the devices waiting hear it, not a silence
            log.exception("device %s: %d bucket writes failed", self._key, len(pending))
            refusals = [STORE_FAILED] * len(pending)
        for (_, _, stream_id), refused in zip(pending, refusals, strict=True):
            if refused is not None:
                log.debug("device %s: bucket write refused: %s", self._key, refused)
            if stream_id:
                self._answer(stream_id, refused)
