"""The bus interface. ``local.py`` serves one process; a NATS bus will serve many nodes."""

from __future__ import annotations

import asyncio
from typing import Protocol

from roost.devices.session import DeviceKey, Operation, Stats
from roost.wire.pson import PsonValue


class Bus(Protocol):
    async def request(
        self,
        key: DeviceKey,
        op: Operation,
        path: tuple[str, ...],
        payload: PsonValue,
        timeout: float,
    ) -> PsonValue:
        """Run a request on the device's session, wherever it lives. Raises DeviceOffline when
        no node holds the device, DeviceTimeout past ``timeout`` seconds, ResourceUnavailable
        when the device refuses."""

    async def stats(self, key: DeviceKey) -> Stats: ...

    def watch_stats(self, key: DeviceKey) -> asyncio.Event:
        """An event set whenever the device's stats change; release it with unwatch_stats."""

    def unwatch_stats(self, key: DeviceKey, event: asyncio.Event) -> None: ...
