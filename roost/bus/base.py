"""The bus interface. ``local.py`` serves one process; a NATS bus will serve many nodes."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from roost.wire.pson import PsonValue


class Operation(enum.Enum):
    CALL = "call"  # read an output, write an input, call an input/output, run a callback
    DESCRIBE = "describe"  # one resource's {in?, out?}; with an empty path, the whole listing
    START_STREAM = "start_stream"  # payload: sampling interval in ms (0: events only)
    STOP_STREAM = "stop_stream"


class DeviceKey(NamedTuple):
    """A device: its owner and its id (a tuple, so hashing it as a dict key costs no Python)."""

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


class Revoked(enum.Enum):
    """What stopped being valid. Open streams that relied on it end (roost.api.stream_access)."""

    ACCESS_TOKEN = "access_token"  # id: the token id; deleted, disabled or changed
    DEVICE_TOKEN = "device_token"  # id: the token id; deleted
    SESSIONS = "sessions"  # every login session of the user: password changed, logged out
    USER = "user"  # the user was disabled or deleted
    DEVICE = "device"  # id: the device id; disabled or deleted


@dataclass(frozen=True, slots=True)
class Revocation:
    """An announcement that something in ``user``'s tree was revoked, for every node to hear.

    It is a nudge, not a verdict: a stream that hears it checks its access again (a changed token
    may still permit it), except for SESSIONS and USER, which end the streams they name."""

    user: str
    what: Revoked
    id: str | None = None
    reason: str = "access revoked"

    def to_json(self) -> dict[str, str | None]:
        return {"user": self.user, "what": self.what.value, "id": self.id, "reason": self.reason}

    @classmethod
    def from_json(cls, data: dict[str, str | None]) -> Revocation:
        user, what, reason = data["user"], data["what"], data["reason"]
        if user is None or what is None or reason is None:
            raise ValueError("a revocation needs a user, what and a reason")
        return cls(user, Revoked(what), data.get("id"), reason)


RevocationListener = Callable[[Revocation], None]


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
        when the device refuses. (The local bus is a plain function handing back the session's
        coroutine, so it may raise DeviceOffline when called rather than when awaited: await it
        in the same statement.)"""

    async def stats(self, key: DeviceKey) -> Stats: ...

    def watch_stats(self, key: DeviceKey) -> asyncio.Event:
        """An event set whenever the device's stats change; release it with unwatch_stats."""

    def unwatch_stats(self, key: DeviceKey, event: asyncio.Event) -> None: ...

    async def announce(self, revocation: Revocation) -> None:
        """Tell every node (this one included) about a revocation. Called after the store has
        the change, so a listener checking again sees it."""

    def watch_revocations(self, user: str, listener: RevocationListener) -> None:
        """Call ``listener`` (on the event loop; it must not raise nor block) with every
        revocation announced in ``user``'s tree; release it with unwatch_revocations."""

    def unwatch_revocations(self, user: str, listener: RevocationListener) -> None: ...


class DeviceTarget(Protocol):
    """What a bus needs of a live session: to put a request to its device."""

    async def request(
        self, op: Operation, path: tuple[str, ...], payload: PsonValue, timeout: float
    ) -> PsonValue: ...


class SessionLookup(Protocol):
    """The sessions of this process, as the local bus sees them (the devices registry)."""

    def get(self, key: DeviceKey) -> DeviceTarget | None: ...

    def stats(self, key: DeviceKey) -> Stats: ...

    def watch(self, key: DeviceKey) -> asyncio.Event: ...

    def unwatch(self, key: DeviceKey, event: asyncio.Event) -> None: ...
