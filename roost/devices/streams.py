"""Live resource streams shared by every web client watching the same resource of a device.

A device holds at most one stream per resource, so watchers share it: the device is asked to
sample at the fastest interval any watcher wants, slower watchers are thinned, events (the
firmware's ``thing.stream()``, input writes on a streamed input) reach everyone at once. When the
last watcher leaves, the device stream stops. When the device goes away its streams are forgotten
and watchers are told; when it comes back they are opened again without the watchers doing
anything.

Each web client owns one :class:`~roost.devices.outbox.Outbox` (re-exported here) and watches
through the bus (:meth:`roost.bus.base.Bus.watch_stream`), which hands the watch to the hub of
the node holding the device: :meth:`StreamHub.subscribe`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from roost.bus.base import DeviceKey, FrameSink
from roost.devices.outbox import Outbox as Outbox
from roost.devices.registry import Registry
from roost.errors import RoostError
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.streams")

Frame = dict[str, PsonValue]
Path = tuple[str, ...]


class Watcher:
    """A web client's subscription to one resource: at most one sample per ``interval`` s."""

    __slots__ = ("interval", "last", "outbox")

    def __init__(self, interval: float, outbox: FrameSink) -> None:
        self.interval = interval  # seconds; 0: every sample the device stream carries
        self.last = float("-inf")
        self.outbox = outbox

    def offer(self, frame: Frame, now: float, event: bool, period: float) -> None:
        # a sample counts as on time when it is within half a device period of the deadline
        if not event and self.interval > 0 and now - self.last < self.interval - period / 2:
            return
        self.last = now
        self.outbox.put(frame)


class _DeviceStream:
    __slots__ = ("busy", "dirty", "interval_ms", "stream_id", "watchers")

    def __init__(self) -> None:
        self.watchers: dict[Watcher, None] = {}  # insertion-ordered set
        self.stream_id: int | None = None  # open on the current session
        self.interval_ms = 0
        self.busy = False  # a control coroutine is talking to the device
        self.dirty = False  # watchers changed while it was busy

    def wanted_ms(self) -> int | None:
        """The interval to ask the device for; None when nobody watches."""
        if not self.watchers:
            return None
        positive = [w.interval for w in self.watchers if w.interval > 0]
        return round(min(positive) * 1000) if positive else 0


class StreamHub:
    def __init__(
        self,
        registry: Registry,
        timeout: float,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self._registry = registry
        self._timeout = timeout
        self._spawn = spawn
        self._devices: dict[DeviceKey, dict[Path, _DeviceStream]] = {}
        self._subscriptions: dict[tuple[DeviceKey, Path, FrameSink], Watcher] = {}

    # what the local bus hands on (roost.bus.base.Bus.watch_stream, unwatch_stream)

    def subscribe(self, key: DeviceKey, path: Path, interval: float, sink: FrameSink) -> None:
        """Watch ``path`` for ``sink`` every ``interval`` s; again: retune its watch."""
        subscription = (key, path, sink)
        old = self._subscriptions.pop(subscription, None)
        if old is not None:
            self.unwatch(key, path, old)
        watcher = self._subscriptions[subscription] = Watcher(interval, sink)
        self.watch(key, path, watcher)

    def unsubscribe(self, key: DeviceKey, path: Path, sink: FrameSink) -> None:
        watcher = self._subscriptions.pop((key, path, sink), None)
        if watcher is not None:
            self.unwatch(key, path, watcher)

    def watch(self, key: DeviceKey, path: Path, watcher: Watcher) -> None:
        stream = self._devices.setdefault(key, {}).setdefault(path, _DeviceStream())
        stream.watchers[watcher] = None
        self._retune(key, path, stream)

    def unwatch(self, key: DeviceKey, path: Path, watcher: Watcher) -> None:
        stream = self._devices.get(key, {}).get(path)
        if stream is not None and watcher in stream.watchers:
            del stream.watchers[watcher]
            self._retune(key, path, stream)

    def device_streams(self, key: DeviceKey) -> int:
        """How many resources of the device have a stream open on the device."""
        return sum(1 for s in self._devices.get(key, {}).values() if s.stream_id is not None)

    def watchers(self) -> int:
        """How many watchers there are, of every device's resources (for the metrics)."""
        return sum(len(s.watchers) for streams in self._devices.values() for s in streams.values())

    def resources_held(self, key: DeviceKey) -> int:
        """How many resources of the device the hub keeps anything for (watched, or with a
        device stream still being opened or closed); 0 once the last watcher has gone and the
        device streams are stopped."""
        return len(self._devices.get(key, ()))

    # what sessions report (through the gateway)

    def stream_data(self, key: DeviceKey, path: Path, value: Frame, event: bool) -> None:
        stream = self._devices.get(key, {}).get(path)
        if stream is None:
            return
        frame: Frame = {"resource": "/".join(path), **value}
        now = time.monotonic()  # not the loop's clock: get_running_loop() costs a syscall
        period = stream.interval_ms / 1000
        for watcher in stream.watchers:
            watcher.offer(frame, now, event, period)

    def session_opened(self, key: DeviceKey) -> None:
        streams = self._devices.get(key, {})
        self._notify(streams, {"device": key.device, "connected": True})
        for path, stream in streams.items():
            stream.stream_id = None
            self._retune(key, path, stream)

    def session_closed(self, key: DeviceKey) -> None:
        streams = self._devices.get(key, {})
        for stream in streams.values():
            stream.stream_id = None
        self._notify(streams, {"device": key.device, "connected": False})

    # internals

    @staticmethod
    def _notify(streams: dict[Path, _DeviceStream], frame: Frame) -> None:
        outboxes = {w.outbox: None for s in streams.values() for w in s.watchers}
        for outbox in outboxes:
            outbox.put(frame)

    def _retune(self, key: DeviceKey, path: Path, stream: _DeviceStream) -> None:
        if stream.busy:
            stream.dirty = True
        else:
            stream.busy = True
            self._spawn(self._control(key, path, stream))

    async def _control(self, key: DeviceKey, path: Path, stream: _DeviceStream) -> None:
        """Bring the device stream in line with its watchers, until they stop changing."""
        try:
            while True:
                stream.dirty = False
                await self._apply(key, path, stream)
                if not stream.dirty:
                    break
        finally:
            stream.busy = False
            if not stream.watchers and stream.stream_id is None:
                streams = self._devices.get(key, {})
                if streams.get(path) is stream:
                    del streams[path]
                    if not streams:
                        del self._devices[key]

    async def _apply(self, key: DeviceKey, path: Path, stream: _DeviceStream) -> None:
        session = self._registry.get(key)
        if session is None:
            stream.stream_id = None
            return
        wanted = stream.wanted_ms()
        try:
            if stream.stream_id is not None and wanted != stream.interval_ms:
                stream_id, stream.stream_id = stream.stream_id, None
                await session.close_stream(stream_id, self._timeout)
            if wanted is not None and stream.stream_id is None:
                stream.stream_id = await session.open_stream(path, wanted, self._timeout)
                stream.interval_ms = wanted
        except RoostError as exc:
            log.info("device %s: stream on %s not changed: %s", key, "/".join(path), exc.message)
            if wanted is not None and not session.closed:
                resource = "/".join(path)
                for outbox in {w.outbox: None for w in stream.watchers}:
                    outbox.put({"resource": resource, "error": {"message": exc.message}})
