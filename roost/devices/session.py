"""One connected, authenticated device: its requests in flight, its stats, its link.

The session does not know which protocol its device speaks: it asks its :class:`Link` to put a
request on the wire, and the link hands replies back through :meth:`DeviceSession.resolve`.
Every request carries a 16-bit stream id (never 0: a device does not answer id 0) and a deadline;
a device that goes away fails everything in flight at once.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Protocol

from roost.errors import DeviceOffline, DeviceTimeout, ResourceUnavailable
from roost.wire.pson import PsonValue


class Operation(enum.Enum):
    CALL = "call"  # read an output, write an input, call an input/output, run a callback
    DESCRIBE = "describe"  # one resource's {in?, out?}; with an empty path, the whole listing


@dataclass(frozen=True, slots=True)
class DeviceKey:
    owner: str
    device: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.device}"


@dataclass(frozen=True, slots=True)
class Stats:
    connected: bool
    connected_ts: int | None
    ip_address: str | None
    rx_bytes: int
    tx_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "connected_ts": self.connected_ts,
            "ip_address": self.ip_address,
            "rx_bytes": self.rx_bytes,
            "tx_bytes": self.tx_bytes,
        }


class Link(Protocol):
    """The protocol side of a session (implemented in roost.net)."""

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None: ...

    def close(self, reason: str) -> None: ...


class StatsListener(Protocol):
    def stats_changed(self, key: DeviceKey) -> None: ...


class DeviceSession:
    __slots__ = (
        "_closed",
        "_listener",
        "_next_id",
        "_pending",
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
        now: float,
        listener: StatsListener,
    ) -> None:
        self.key = key
        self.link = link
        self.ip_address = ip_address
        self.connected_ts = connected_ts
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.last_rx = now  # loop time of the last bytes received, for the silence check
        self._listener = listener
        self._pending: dict[int, asyncio.Future[PsonValue]] = {}
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

    def count_traffic(self, rx: int, tx: int, now: float) -> None:
        if rx:
            self.rx_bytes += rx
            self.last_rx = now
        self.tx_bytes += tx
        self._listener.stats_changed(self.key)

    async def request(
        self, op: Operation, path: tuple[str, ...], payload: PsonValue, timeout: float
    ) -> PsonValue:
        """Send one request and wait for its reply's payload (None when it carried none)."""
        if self._closed:
            raise DeviceOffline(f"device {self.key.device} is not connected")
        stream_id = self._allocate_id()
        loop = asyncio.get_running_loop()
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
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(DeviceOffline(f"device disconnected: {reason}"))

    def _allocate_id(self) -> int:
        if len(self._pending) >= 0xFFFF:
            raise DeviceTimeout("too many requests in flight to this device")
        stream_id = self._next_id
        while stream_id in self._pending:
            stream_id = stream_id % 0xFFFF + 1
        self._next_id = stream_id % 0xFFFF + 1
        return stream_id

    def _expire(self, stream_id: int, timeout: float) -> None:
        future = self._pending.pop(stream_id, None)
        if future is not None and not future.done():
            future.set_exception(
                DeviceTimeout(f"device did not answer within {int(timeout * 1000)} ms")
            )
