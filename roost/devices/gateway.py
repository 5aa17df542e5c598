"""What a protocol listener needs from the rest of Roost: device authentication, the registry,
session start and end, and the watch for silent devices."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from roost.auth.passwords import DeviceCredentials
from roost.auth.ratelimit import FailureWindow, address_key
from roost.bus import events
from roost.bus.base import DeviceKey, Event
from roost.config import Settings
from roost.devices import properties
from roost.devices.admission import Admission
from roost.devices.peers import PeerCalls
from roost.devices.registry import Registry
from roost.devices.session import DeviceSession, Link
from roost.devices.streams import StreamHub
from roost.endpoints.delivery import EndpointCalls
from roost.store.base import Store
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.devices")


class DeviceGateway:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        credentials: DeviceCredentials,
        settings: Settings,
        clock: Callable[[], float],
        auth_failures: FailureWindow | None = None,
    ) -> None:
        """``auth_failures`` counts failed authentications per source address; by default
        ``device_auth_failures_per_address`` per ``auth_failure_window`` on the monotonic clock."""
        self.store = store
        self.registry = registry
        self.streams = StreamHub(registry, settings.call_timeout_ms / 1000, self.spawn)
        self.peers = PeerCalls(  # device -> device calls
            settings.call_timeout_ms / 1000, settings.device_calls_in_flight, self.spawn
        )
        self.credentials = credentials
        self.settings = settings
        self.clock = clock
        # where session starts and ends are announced (server events): the node's bus, once built
        self.publish: Callable[[Event], None] = _unheard
        # devices' endpoint calls (legacy flag 8, IOTMP service 4); None: refused, until given
        self.endpoints: EndpointCalls | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # connections still authenticating, bounded in number (and each in frame size and time)
        self.admission = Admission(
            settings.max_unauthenticated, settings.max_unauthenticated_per_address, registry.__len__
        )
        self.closing = False  # shutting down: no new sessions
        if auth_failures is None:  # not ``or``: an empty window is falsy (its len)
            auth_failures = FailureWindow(
                settings.device_auth_failures_per_address,
                settings.auth_failure_window,
                time.monotonic,
            )
        self.auth_failures = auth_failures

    async def authenticate(
        self, user: str, device: str, credentials: str, ip: str | None
    ) -> DeviceKey | None:
        """The device's key if it is registered, enabled and the credentials match.

        An address that used up its budget of failures is refused at once, whatever it sends,
        without a database lookup or a hash check, until its oldest failure leaves the window.
        """
        address = address_key(ip)
        wait = self.auth_failures.retry_after(address)
        if wait > 0:
            log.debug("device %r/%r refused from %s for %.0f s more", user, device, ip, wait)
            return None
        record = await self.store.get_device(user, device)
        stored = record.credentials_hash if record is not None and record.enabled else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(None, self.credentials.verify, stored, credentials)
        if not ok:
            log.warning("device %r/%r failed to authenticate from %s", user, device, ip)
            self.auth_failures.record(address)
            wait = self.auth_failures.retry_after(address)
            if wait > 0:
                log.warning(
                    "too many failed device authentications from %s: refused for %.0f s", ip, wait
                )
            return None
        # deleted, disabled or given new credentials while we were hashing: not this time
        current = await self.store.get_device(user, device)
        if current is None or not current.enabled or current.credentials_hash != stored:
            return None
        return DeviceKey(user, device)

    def open_session(self, key: DeviceKey, link: Link, ip: str | None) -> DeviceSession:
        now_ms = int(self.clock() * 1000)
        session = DeviceSession(key, link, ip, now_ms, asyncio.get_running_loop(), self)
        if self.registry.add(session) is not None:
            log.info("device %s reconnected from %s, old connection closed", key, ip)
        else:
            log.info("device %s connected from %s", key, ip)
        self.streams.session_opened(key)
        self.publish(events.device_state_change(key, True, now_ms))
        self.spawn(self.store.set_last_connection(key.owner, key.device, now_ms))
        return session

    def end_session(self, session: DeviceSession, reason: str) -> None:
        session.close(reason)
        if self.registry.remove(session):
            log.info("device %s disconnected: %s", session.key, reason)
            self.streams.session_closed(session.key)
            now_ms = int(self.clock() * 1000)
            self.publish(events.device_state_change(session.key, False, now_ms))
            self.spawn(
                self.store.set_last_connection(session.key.owner, session.key.device, now_ms)
            )

    # SessionListener

    async def answer_property(
        self, key: DeviceKey, read: bool, prop: PsonValue, value: PsonValue
    ) -> tuple[bool, PsonValue]:
        """A device reads (``read``) or sets its property ``prop``: (ok, value read), as
        :func:`roost.devices.properties.answer` gives it, with this node's store and bus."""
        now_ms = int(self.clock() * 1000)
        return await properties.answer(
            self.store, self.settings, key, read, prop, value, now_ms, self.publish
        )

    def stats_changed(self, key: DeviceKey) -> None:
        self.registry.stats_changed(key)

    def stream_data(
        self, key: DeviceKey, path: tuple[str, ...], value: dict[str, PsonValue], event: bool
    ) -> None:
        self.streams.stream_data(key, path, value, event)

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
        self.closing = True
        for session in self.registry.sessions():
            session.link.close("server shutting down")
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in late:
                task.cancel()


def _unheard(event: Event) -> None:
    """Where events go before the gateway is given a bus: nowhere."""
