"""Who in this process listens for what a bus delivers by user (revocations, server events): the
delivery end of every bus.

The local bus delivers a message straight here; a NATS bus will publish it on a subject of its
user (``roost.revocations.<user>``, ``roost.events.<user>``) and deliver what it receives here,
on every node alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("roost.bus")


class Addressed(Protocol):
    @property
    def user(self) -> str: ...


MessageT = TypeVar("MessageT", bound=Addressed)


class ListenersByUser(Generic[MessageT]):
    def __init__(self, what: str) -> None:
        self._what = what  # for the log: "revocation", "event"
        self._by_user: dict[str, dict[Callable[[MessageT], None], None]] = {}  # ordered sets

    def add(self, user: str, listener: Callable[[MessageT], None]) -> None:
        self._by_user.setdefault(user, {})[listener] = None

    def remove(self, user: str, listener: Callable[[MessageT], None]) -> None:
        listeners = self._by_user.get(user)
        if listeners is not None:
            listeners.pop(listener, None)
            if not listeners:
                del self._by_user[user]

    def listening(self, user: str) -> int:
        """How many listeners hear ``user``'s messages."""
        return len(self._by_user.get(user, ()))

    def deliver(self, message: MessageT) -> None:
        listeners = self._by_user.get(message.user)
        if not listeners:  # the usual case (every connect and disconnect is an event)
            return
        for listener in list(listeners):
            try:
                listener(message)
            except Exception:  # one broken listener must not keep the others from hearing
                log.exception("%s listener failed on %s", self._what, message)
