"""Who in this process listens for revocations, by user: the delivery end of every bus.

The local bus delivers an announcement straight here; a NATS bus will publish it on a subject
(``roost.revocations.<user>``) and deliver what it receives here, on every node alike.
"""

from __future__ import annotations

import logging

from roost.bus.base import Revocation, RevocationListener

log = logging.getLogger("roost.bus")


class RevocationListeners:
    def __init__(self) -> None:
        self._by_user: dict[str, dict[RevocationListener, None]] = {}  # ordered sets

    def add(self, user: str, listener: RevocationListener) -> None:
        self._by_user.setdefault(user, {})[listener] = None

    def remove(self, user: str, listener: RevocationListener) -> None:
        listeners = self._by_user.get(user)
        if listeners is not None:
            listeners.pop(listener, None)
            if not listeners:
                del self._by_user[user]

    def listening(self, user: str) -> int:
        """How many listeners hear ``user``'s revocations."""
        return len(self._by_user.get(user, ()))

    def deliver(self, revocation: Revocation) -> None:
        for listener in list(self._by_user.get(revocation.user, ())):
            try:
                listener(revocation)
            except Exception:  # one broken listener must not keep the others from hearing
                log.exception("revocation listener failed on %s", revocation)
