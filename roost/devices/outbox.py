"""One web client's frames waiting to be sent: the sink it hands the bus for its streams."""

from __future__ import annotations

import asyncio
from collections import deque

from roost.bus.base import Frame


class Outbox:
    """A bounded queue of frames that drops its OLDEST frame when full, so a client that does
    not read costs at most ``limit`` frames of memory."""

    def __init__(self, limit: int) -> None:
        self._frames: deque[Frame] = deque(maxlen=limit)
        self._ready = asyncio.Event()
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        if len(self._frames) == self._frames.maxlen:
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    async def take(self) -> list[Frame]:
        """Every waiting frame, oldest first; waits while there are none."""
        await self._ready.wait()
        self._ready.clear()
        frames = list(self._frames)
        self._frames.clear()
        return frames
