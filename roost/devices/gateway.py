"""What a protocol listener needs from the rest of Roost: device authentication, the registry,
session start and end, and the watch for silent devices."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from roost.auth.passwords import DeviceCredentials
from roost.config import Settings
from roost.devices.registry import Registry
from roost.devices.session import DeviceKey, DeviceSession, Link
from roost.store.base import Store

log = logging.getLogger("roost.devices")


class DeviceGateway:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        credentials: DeviceCredentials,
        settings: Settings,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.registry = registry
        self.credentials = credentials
        self.settings = settings
        self.clock = clock
        self._tasks: set[asyncio.Task[Any]] = set()

    async def authenticate(
        self, user: str, device: str, credentials: str, ip: str | None
    ) -> DeviceKey | None:
        """The device's key if it is registered, enabled and the credentials match."""
        record = await self.store.get_device(user, device)
        stored = record.credentials_hash if record is not None and record.enabled else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.credentials.verify, stored, credentials)
        if not ok:
            log.warning("device %s/%s failed to authenticate from %s", user, device, ip)
            return None
        return DeviceKey(user, device)

    def open_session(self, key: DeviceKey, link: Link, ip: str | None) -> DeviceSession:
        now_ms = int(self.clock() * 1000)
        session = DeviceSession(
            key, link, ip, now_ms, asyncio.get_running_loop().time(), self.registry
        )
        if self.registry.add(session) is not None:
            log.info("device %s reconnected from %s, old connection closed", key, ip)
        else:
            log.info("device %s connected from %s", key, ip)
        self.spawn(self.store.set_last_connection(key.owner, key.device, now_ms))
        return session

    def end_session(self, session: DeviceSession, reason: str) -> None:
        session.close(reason)
        if self.registry.remove(session):
            log.info("device %s disconnected: %s", session.key, reason)
            now_ms = int(self.clock() * 1000)
            self.spawn(
                self.store.set_last_connection(session.key.owner, session.key.device, now_ms)
            )

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background job owned by the gateway (cancelled on shutdown, errors logged)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._job_done)
        return task

    def _job_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background job failed", exc_info=task.exception())

    async def drop_silent_devices(self) -> None:
        """Forever: close sessions that sent nothing for keepalive_timeout seconds."""
        timeout = self.settings.keepalive_timeout
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.05, timeout / 5))
            for session in self.registry.silent_since(loop.time() - timeout):
                session.link.close(f"silent for more than {timeout:g} s")

    async def shutdown(self, grace: float = 5.0) -> None:
        """Close every session, then wait for background jobs (cancelled past ``grace``)."""
        for session in self.registry.sessions():
            session.link.close("server shutting down")
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in late:
                task.cancel()
