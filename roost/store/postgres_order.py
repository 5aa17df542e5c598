"""Per-key submission order for the PostgreSQL store.

The SQLite store runs every statement on one thread, in the order the coroutines submitted them;
a device's unconfirmed bucket writes (roost.devices.buckets: read the bucket, then write the
point at the first free ms) therefore land in the order they arrived. A pool of connections runs
them side by side instead, and the points could change places. :class:`InOrder` gives each key
(a bucket) a FIFO lock: the calls for one key run one at a time in the order they came, and
calls for different keys still run at once. Keys without calls are forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager


class InOrder:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        """Waits for the calls for ``key`` that came before (asyncio.Lock is FIFO)."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __contains__(self, key: Hashable) -> bool:
        """Whether calls for ``key`` are under way or waiting."""
        return key in self._locks

    def __len__(self) -> int:
        return len(self._locks)
