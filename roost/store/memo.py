"""Records read lately, kept for the authorization path.

Every call made with a user access token or a device token reads the token's record; through the
store's single worker thread that is a thread hop per request, and it cost 40% of the calls a
second (7,800 against 12,800 with a session token, `bench` devices). :class:`Memo` keeps the
records a store read, for ``ttl`` seconds at most:

- before it submits any write that could change a kept record, the store calls
  :meth:`~Memo.invalidate`, so this process never serves a record older than its own writes. A
  read submitted before such a write may finish after it: it carries the generation it started
  in, and :meth:`~Memo.put` drops it when the generation has moved;
- another process writing the same file (an admin command) is seen within ``ttl``;
- only records that exist are kept (a token that does not exist yet is read again), at most
  ``limit`` of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


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
