"""The in-process bus: every device session lives in this process's registry."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from roost.bus.base import (
    DeviceKey,
    Operation,
    Revocation,
    RevocationListener,
    SessionLookup,
    Stats,
)
from roost.bus.revocations import RevocationListeners
from roost.errors import DeviceOffline
from roost.wire.pson import PsonValue


class LocalBus:
    def __init__(self, registry: SessionLookup) -> None:
        self._registry = registry
        self.revocations = RevocationListeners()

    def request(
        self,
        key: DeviceKey,
        op: Operation,
        path: tuple[str, ...],
        payload: PsonValue,
        timeout: float,
    ) -> Coroutine[Any, Any, PsonValue]:
        # Hands back the session's own coroutine: one frame less to enter and resume per call.
        session = self._registry.get(key)
        if session is None:
            raise DeviceOffline(f"device {key.device} is not connected")
        return session.request(op, path, payload, timeout)

    async def stats(self, key: DeviceKey) -> Stats:
        return self._registry.stats(key)

    def watch_stats(self, key: DeviceKey) -> asyncio.Event:
        return self._registry.watch(key)

    def unwatch_stats(self, key: DeviceKey, event: asyncio.Event) -> None:
        self._registry.unwatch(key, event)

    async def announce(self, revocation: Revocation) -> None:
        self.revocations.deliver(revocation)

    def watch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.add(user, listener)

    def unwatch_revocations(self, user: str, listener: RevocationListener) -> None:
        self.revocations.remove(user, listener)
