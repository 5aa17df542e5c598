"""The endpoint calls waiting for a worker, a queue per user, served in turn (pure: no clock,
no I/O).

:meth:`Turns.take` gives the next call to start: of the users with a call waiting and fewer than
``per_user`` calls under way, the one served least lately (a user never served, or back after
having had nothing waiting, first), so that a user with many calls waiting gets one worker in
turn with the others, never all of them.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Turns(Generic[T]):
    """Calls waiting, by user, and the calls under way of each user."""

    def __init__(self, per_user: int) -> None:
        self.per_user = max(1, per_user)  # calls of one user under way at once
        self._waiting: dict[str, deque[T]] = {}  # user -> calls waiting, oldest first
        self._running: dict[str, int] = {}  # user -> calls under way
        self._served: dict[str, int] = {}  # user -> turn of their last start
        self._turn = 0
        self.waiting = 0  # calls waiting, all users
        self.running = 0  # calls under way, all users

    def add(self, owner: str, call: T, first: bool = False) -> None:
        """A call of ``owner`` waits (``first``: before the user's others, as a retry does)."""
        queue = self._waiting.setdefault(owner, deque())
        if first:
            queue.appendleft(call)
        else:
            queue.append(call)
        self.waiting += 1

    def take(self) -> tuple[str, T] | None:
        """The next call to start, now under way; None when no user may start one."""
        ready = [owner for owner in self._waiting if self._running.get(owner, 0) < self.per_user]
        if not ready:
            return None
        owner = min(ready, key=lambda user: self._served.get(user, 0))
        queue = self._waiting[owner]
        call = queue.popleft()
        if not queue:
            del self._waiting[owner]
        self.waiting -= 1
        self._running[owner] = self._running.get(owner, 0) + 1
        self.running += 1
        self._turn += 1
        self._served[owner] = self._turn
        return owner, call

    def done(self, owner: str) -> None:
        """A call of ``owner`` taken is no longer under way (ended, or waiting to be retried)."""
        left = self._running.pop(owner) - 1
        self.running -= 1
        if left:
            self._running[owner] = left
        elif owner not in self._waiting:
            self._served.pop(owner, None)

    def drain(self) -> list[T]:
        """Every call waiting, removed."""
        calls = [call for queue in self._waiting.values() for call in queue]
        self._waiting.clear()
        self.waiting = 0
        return calls
