"""What the REST layer may ask of devices, wherever their sessions live: the one seam between
``roost.api`` and the devices.

Everything goes through the :class:`~roost.bus.base.Bus` interface (never this process's
registry, gateway or stream hub), so the API works unchanged whichever bus runs: the in-process
one, or one that carries each call to the node holding the device. Calls hand back the bus's
awaitable as it is (no coroutine of their own on the hot path); like the bus, they raise only
when it is awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from roost.bus.base import Bus, DeviceKey, FrameSink, Operation, ResourcePath, Stats
from roost.wire.pson import PsonValue


class DeviceCalls:
    __slots__ = ("_bus", "request")

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        # A call or a description, as its Operation says: the bus's own method, so the hot path
        # (roost.api.resources) pays no call of ours. Raises as call() does, when awaited.
        self.request: Callable[
            [DeviceKey, Operation, ResourcePath, PsonValue, float], Awaitable[PsonValue]
        ] = bus.request

    def call(
        self, key: DeviceKey, path: ResourcePath, payload: PsonValue, timeout: float
    ) -> Awaitable[PsonValue]:
        """Read an output, write an input, run a resource: its answer (None: none). Raises, when
        awaited, DeviceOffline, DeviceTimeout past ``timeout`` s, ResourceUnavailable."""
        return self._bus.request(key, Operation.CALL, path, payload, timeout)

    def describe(self, key: DeviceKey, path: ResourcePath, timeout: float) -> Awaitable[PsonValue]:
        """One resource's ``{in?, out?}``; with an empty path, the device's whole listing."""
        return self._bus.request(key, Operation.DESCRIBE, path, None, timeout)

    def stats(self, key: DeviceKey) -> Awaitable[Stats]:
        return self._bus.stats(key)

    def watch_stats(self, key: DeviceKey) -> None:
        """Have the device's stats changes published as ``device_stats`` events of its user
        (heard with ``bus.subscribe_events``); release it with unwatch_stats."""
        self._bus.watch_stats(key)

    def unwatch_stats(self, key: DeviceKey) -> None:
        self._bus.unwatch_stats(key)

    def watch(self, key: DeviceKey, path: ResourcePath, interval: float, sink: FrameSink) -> None:
        """Stream the resource into ``sink`` (see :meth:`roost.bus.base.Bus.watch_stream`);
        watching it again retunes the interval."""
        self._bus.watch_stream(key, path, interval, sink)

    def unwatch(self, key: DeviceKey, path: ResourcePath, sink: FrameSink) -> None:
        self._bus.unwatch_stream(key, path, sink)

    def disconnect(self, key: DeviceKey, reason: str) -> Awaitable[bool]:
        """Close the device's connection (disabled, say); False when it was not connected."""
        return self._bus.disconnect(key, reason)

    def forget(self, key: DeviceKey) -> Awaitable[None]:
        """Forget what is remembered of a deleted device (its last stats)."""
        return self._bus.forget(key)
