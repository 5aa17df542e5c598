"""The bus interface. ``local.py`` serves one process; a NATS bus will serve many nodes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

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

    def to_json(self) -> dict[str, PsonValue]:
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


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in ``user``'s tree (a server event, thinger-api.md 2.19), for
    every node's subscribers: ``name`` (``device_state_change``, ...) and its fields, JSON-ready.
    Build them with the helpers of :mod:`roost.bus.events`."""

    user: str
    name: str
    fields: dict[str, PsonValue]

    def to_client(self) -> dict[str, PsonValue]:
        """What an events socket sends: the fields, with ``event`` and ``user``."""
        return {"event": self.name, **self.fields, "user": self.user}

    def to_json(self) -> dict[str, object]:
        return {"user": self.user, "name": self.name, "fields": self.fields}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        user, name, fields = data["user"], data["name"], data["fields"]
        if not isinstance(user, str) or not isinstance(name, str) or not isinstance(fields, dict):
            raise ValueError("an event needs a user, a name and its fields")
        return cls(user, name, fields)


EventListener = Callable[[Event], None]

ResourcePath = tuple[str, ...]  # a resource of a device: ("temperature",), ("a", "b") for a/b
Frame = dict[str, PsonValue]  # what a resource stream sends its watchers (JSON-ready)


class FrameSink(Protocol):
    """Where a bus puts the frames of a watched resource stream (hashable: it names the watch).
    ``put`` is called on the event loop; it must not raise nor block."""

    def put(self, frame: Frame) -> None: ...


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
        when the device refuses. Every failure is raised when the answer is awaited, never by
        the call itself (the local bus hands back the session's own coroutine: no frame more)."""

    async def stats(self, key: DeviceKey) -> Stats:
        """The device's stats: live on the node holding it, else the last ones remembered."""

    def watch_stats(self, key: DeviceKey) -> None:
        """Ask that the device's stats changes be published, while watched, as
        ``device_stats`` events of its user (:func:`roost.bus.events.device_stats`): the node
        holding the device publishes them, so a stats stream on any node hears them with
        ``subscribe_events``, like every other event. Release it with unwatch_stats."""

    def unwatch_stats(self, key: DeviceKey) -> None: ...

    def watch_stream(
        self, key: DeviceKey, path: ResourcePath, interval: float, sink: FrameSink
    ) -> None:
        """Put into ``sink`` what the device's resource at ``path`` streams: at most one sample
        per ``interval`` s (0: every one), events at once, ``{"device": d, "connected": bool}``
        (once per sink, whatever it watches) when the device leaves or comes back, and
        ``{"resource": r, "error": {"message": m}}`` when the device refuses the stream. The
        device keeps one stream per resource, shared by every sink on every node at the fastest
        interval, reopened when it reconnects. Watching a path again retunes it; release it with
        unwatch_stream."""

    def unwatch_stream(self, key: DeviceKey, path: ResourcePath, sink: FrameSink) -> None:
        """Stop ``sink``'s watch; the device stream stops when its last watcher leaves."""

    async def disconnect(self, key: DeviceKey, reason: str) -> bool:
        """Close the device's connection, wherever it is; False when no node holds it."""

    async def forget(self, key: DeviceKey) -> None:
        """Forget what any node remembers of a deleted device (its last stats)."""

    async def announce(self, revocation: Revocation) -> None:
        """Tell every node (this one included) about a revocation. Called after the store has
        the change, so a listener checking again sees it."""

    def watch_revocations(self, user: str, listener: RevocationListener) -> None:
        """Call ``listener`` (on the event loop; it must not raise nor block) with every
        revocation announced in ``user``'s tree; release it with unwatch_revocations."""

    def unwatch_revocations(self, user: str, listener: RevocationListener) -> None: ...

    def publish(self, event: Event) -> None:
        """Tell every node's subscribers of ``event.user`` (this node's included, at once or a
        loop step later); never blocks nor raises, so a device session may call it."""

    def subscribe_events(self, user: str, listener: EventListener) -> None:
        """Call ``listener`` (on the event loop; it must not raise nor block) with every event
        published in ``user``'s tree; release it with unsubscribe_events."""

    def unsubscribe_events(self, user: str, listener: EventListener) -> None: ...

    async def close(self) -> None:
        """Let go of what the bus holds (connections, tasks): once, at shutdown, after this
        node's device sessions are closed."""


class DeviceTarget(Protocol):
    """What a bus needs of a live session: to put a request to its device."""

    async def request(
        self, op: Operation, path: tuple[str, ...], payload: PsonValue, timeout: float
    ) -> PsonValue: ...


class SessionLookup(Protocol):
    """The sessions of this process, as the local bus sees them (the devices registry)."""

    def get(self, key: DeviceKey) -> DeviceTarget | None: ...

    def stats(self, key: DeviceKey) -> Stats: ...

    def watch(self, key: DeviceKey, listener: Callable[[DeviceKey], None]) -> None: ...

    def unwatch(self, key: DeviceKey, listener: Callable[[DeviceKey], None]) -> None: ...

    def disconnect(self, key: DeviceKey, reason: str) -> bool: ...

    def forget(self, key: DeviceKey) -> None: ...


class StreamFanout(Protocol):
    """The resource streams of this process's sessions, as the local bus sees them (the
    devices' StreamHub): one device stream per resource, shared by its sinks."""

    def subscribe(
        self, key: DeviceKey, path: ResourcePath, interval: float, sink: FrameSink
    ) -> None: ...

    def unsubscribe(self, key: DeviceKey, path: ResourcePath, sink: FrameSink) -> None: ...
