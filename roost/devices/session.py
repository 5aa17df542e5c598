"""One connected, authenticated device: its requests in flight, its stats, its link.

The session does not know which protocol its device speaks: it asks its :class:`Link` to put a
request on the wire, and the link hands replies back through :meth:`DeviceSession.resolve`.
Every request carries a 16-bit stream id (never 0: a device does not answer id 0) and a deadline;
a device that goes away fails everything in flight at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from roost.bus.base import DeviceKey, Operation, Stats
from roost.errors import DeviceOffline, DeviceTimeout, ResourceUnavailable
from roost.wire.pson import PsonValue


class Link(Protocol):
    """The protocol side of a session (implemented in roost.net)."""

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None: ...

    def close(self, reason: str) -> None: ...

    def kind(self) -> tuple[str, bool]:
        """(protocol, TLS or not) of the connection: ``legacy``, ``iotmp`` or
        ``iotmp_websocket``; read when the metrics are scraped (roost.metrics)."""
        ...


class SessionListener(Protocol):
    """Who hears what a session sees: traffic (stats) and data on its open streams."""

    def stats_changed(self, key: DeviceKey) -> None: ...

    def stream_data(
        self, key: DeviceKey, path: tuple[str, ...], value: dict[str, PsonValue], event: bool
    ) -> None: ...


class DeviceSession:
    __slots__ = (
        "_closed",
        "_listener",
        "_loop",
        "_next_id",
        "_pending",
        "_streams",
        "connected_ts",
        "ip_address",
        "key",
        "last_rx",
        "link",
        "rx_bytes",
        "tx_bytes",
    )

    def __init__(
        self,
        key: DeviceKey,
        link: Link,
        ip_address: str | None,
        connected_ts: int,
        loop: asyncio.AbstractEventLoop,
        listener: SessionListener,
    ) -> None:
        self.key = key
        self.link = link
        self.ip_address = ip_address
        self.connected_ts = connected_ts
        self.rx_bytes = 0
        self.tx_bytes = 0
        # The loop, kept: asyncio.get_running_loop() makes a getpid() syscall on Python 3.11.
        self._loop = loop
        self.last_rx = loop.time()  # loop time of the last complete frame, for the silence check
        self._listener = listener
        self._pending: dict[int, asyncio.Future[PsonValue]] = {}
        self._streams: dict[int, tuple[str, ...]] = {}  # open stream id -> resource path
        self._next_id = 1
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> Stats:
        return Stats(
            connected=not self._closed,
            connected_ts=self.connected_ts,
            ip_address=self.ip_address,
            rx_bytes=self.rx_bytes,
            tx_bytes=self.tx_bytes,
        )

    def count_traffic(self, rx: int, tx: int) -> None:
        self.rx_bytes += rx
        self.tx_bytes += tx
        self._listener.stats_changed(self.key)

    def heard(self) -> None:
        """A complete frame arrived (partial bytes do not count: a trickle is silence)."""
        self.last_rx = self._loop.time()

    def request(
        self, op: Operation, path: tuple[str, ...], payload: PsonValue, timeout: float
    ) -> Coroutine[Any, Any, PsonValue]:
        """Send one request and wait for its reply's payload (None when it carried none).
        Hands back the coroutine doing it, which raises only when awaited."""
        return self._request(None, op, path, payload, timeout)

    async def open_stream(self, path: tuple[str, ...], interval_ms: int, timeout: float) -> int:
        """Ask the device to stream a resource; returns the stream id its data will carry."""
        stream_id = self._allocate_id()
        self._streams[stream_id] = path
        try:
            await self._request(stream_id, Operation.START_STREAM, path, interval_ms, timeout)
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        return stream_id

    async def close_stream(self, stream_id: int, timeout: float) -> None:
        path = self._streams.pop(stream_id, None)
        if path is not None and not self._closed:
            await self._request(stream_id, Operation.STOP_STREAM, path, None, timeout)

    def stream_data(self, stream_id: int, value: dict[str, PsonValue], event: bool) -> bool:
        """Data the device sent on a stream; False if no stream has that id."""
        path = self._streams.get(stream_id)
        if path is None:
            return False
        self._listener.stream_data(self.key, path, value, event)
        return True

    async def _request(
        self,
        stream_id: int | None,  # None: a new one
        op: Operation,
        path: tuple[str, ...],
        payload: PsonValue,
        timeout: float,
    ) -> PsonValue:
        if self._closed:
            raise DeviceOffline(f"device {self.key.device} is not connected")
        if stream_id is None:
            stream_id = self._allocate_id()
        loop = self._loop
        future: asyncio.Future[PsonValue] = loop.create_future()
        self._pending[stream_id] = future
        deadline = loop.call_later(timeout, self._expire, stream_id, timeout)
        try:
            self.link.send_request(stream_id, op, path, payload)
            return await future
        finally:
            deadline.cancel()
            self._pending.pop(stream_id, None)

    def resolve(self, stream_id: int, ok: bool, payload: PsonValue) -> bool:
        """Hand a reply to the request waiting for it; False if nobody waits for that id."""
        future = self._pending.pop(stream_id, None)
        if future is None or future.done():
            return False
        if ok:
            future.set_result(payload)
        else:
            future.set_exception(ResourceUnavailable("resource not available on the device"))
        return True

    def close(self, reason: str) -> None:
        """Mark the session gone and fail every call in flight with DeviceOffline."""
        if self._closed:
            return
        self._closed = True
        self._streams.clear()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DeviceOffline(f"device disconnected: {reason}"))

    def _allocate_id(self) -> int:
        if len(self._pending) + len(self._streams) >= 0xFFFF:
            raise DeviceTimeout("too many requests in flight to this device")
        stream_id = self._next_id
        while stream_id in self._pending or stream_id in self._streams:
            stream_id = stream_id % 0xFFFF + 1
        self._next_id = stream_id % 0xFFFF + 1
        return stream_id

    def _expire(self, stream_id: int, timeout: float) -> None:
        future = self._pending.pop(stream_id, None)
        if future is not None and not future.done():
            future.set_exception(
                DeviceTimeout(f"device did not answer within {int(timeout * 1000)} ms")
            )
