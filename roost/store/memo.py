"""Records read lately, kept for the authorization path.

Every call made with a user access token or a device token reads the token's record; through the
store's single worker thread that is a thread hop per request, and it cost 40% of the calls a
second (7,800 against 12,800 with a session token, `bench` devices). :class:`Memo` keeps the
records a store read, for ``ttl`` seconds at most:

- the store runs any write that could change a kept record through :meth:`~Memo.writing`, which
  forgets every record both before the write is submitted and after it is done, so this process
  never serves a record older than its own writes. A read carries the generation it started in,
  and :meth:`~Memo.put` drops it when the generation has moved: a read submitted before the write
  is dropped by the first forgetting, and one that started while the write was on its way (it may
  have read the record as it was, on another connection) by the second;
- another process writing the same file (an admin command) is seen within ``ttl``;
- only records that exist are kept (a token that does not exist yet is read again), at most
  ``limit`` of them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


class Memo(Generic[K, V]):
    def __init__(
        self, ttl: float, limit: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._kept: dict[K, tuple[float, V]] = {}
        self.generation = 0

    def get(self, key: K) -> V | None:
        entry = self._kept.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._kept[key]
            return None
        return value

    def put(self, key: K, value: V, generation: int) -> None:
        """Keep ``value``, read in ``generation``, unless a write has come since."""
        if generation != self.generation or self._ttl <= 0:
            return
        if len(self._kept) >= self._limit:
            self._kept.clear()
        self._kept[key] = (self._clock() + self._ttl, value)

    def invalidate(self) -> None:
        """Forget everything: a write that may change kept records is about to be submitted."""
        self._kept.clear()
        self.generation += 1

    async def writing(self, write: Awaitable[T]) -> T:
        """The result of ``write``, a write that may change kept records: everything is forgotten
        before it is submitted and again once it is done (succeeded or not)."""
        self.invalidate()
        try:
            return await write
        finally:
            self.invalidate()
