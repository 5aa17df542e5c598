"""Device statistics: JSON, or a Server-Sent Events stream of every change.

The stream sends the current stats at once, then again whenever they change (connect, disconnect,
traffic), at most once per ``sse_min_interval`` seconds, and a comment line every
``sse_keepalive`` seconds so proxies keep the connection open. It hears the changes as
``device_stats`` events on the bus, as the events socket hears its events: the node holding the
device publishes them while someone, on any node, watches. It ends when the client leaves, or
when the access it was opened with ends (token deleted, disabled or expired, password changed,
device disabled or deleted: see :mod:`roost.api.stream_access`); then its last event is
``event: error`` with ``data: {"error": {"message": <why>}}`` and the response ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.devices import find_device
from roost.api.json import dumps, json_response
from roost.api.stream_access import StreamAccess
from roost.bus import events
from roost.bus.base import DeviceKey, Event
from roost.services import Services
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.api")


async def device_stats(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    services: Services = request.app.state.services
    key = DeviceKey(owner, device_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        access = StreamAccess(request, "ReadDeviceStatistics", owner, device_id)
        await access.open()
        return StreamingResponse(
            _stats_events(services, key, access),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    await authorize(request, "ReadDeviceStatistics", owner, device_id)
    await find_device(services, owner, device_id)
    return json_response((await services.devices.stats(key)).to_json())


async def _stats_events(
    services: Services, key: DeviceKey, access: StreamAccess
) -> AsyncIterator[bytes]:
    settings = services.settings
    heard = _StatsHeard(key)
    # heard first, then read: no change falls between the answer and the watch
    services.bus.subscribe_events(key.owner, heard)
    services.devices.watch_stats(key)
    lost = asyncio.ensure_future(access.lost())
    try:
        latest = (await services.devices.stats(key)).to_json()
        while not lost.done():
            heard.changed.clear()
            latest = heard.latest or latest
            yield b"data: " + dumps(latest) + b"\n\n"
            await asyncio.wait((lost,), timeout=settings.sse_min_interval)
            while not heard.changed.is_set() and not lost.done():
                await _first(lost, heard.changed.wait(), settings.sse_keepalive)
                if not heard.changed.is_set() and not lost.done():
                    yield b": keep-alive\n\n"
        reason = lost.result()
        log.info("stats stream of %s ended: %s", key, reason)
        yield b"event: error\ndata: " + dumps({"error": {"message": reason}}) + b"\n\n"
    finally:
        lost.cancel()
        services.devices.unwatch_stats(key)
        services.bus.unsubscribe_events(key.owner, heard)


class _StatsHeard:
    """The ``device_stats`` events of one device, as a stats stream hears them on the bus."""

    def __init__(self, key: DeviceKey) -> None:
        self.device = key.device
        self.changed = asyncio.Event()
        self.latest: dict[str, PsonValue] | None = None

    def __call__(self, event: Event) -> None:
        if event.name == events.DEVICE_STATS and event.fields.get("device") == self.device:
            self.latest = {k: v for k, v in event.fields.items() if k != "device"}
            self.changed.set()


async def _first(lost: asyncio.Future[str], wait: Coroutine[Any, Any, Any], timeout: float) -> None:
    """Wait for ``wait``, until ``lost`` is done or ``timeout`` seconds have passed."""
    waiting = asyncio.ensure_future(wait)
    try:
        await asyncio.wait((lost, waiting), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


routes = [
    Route("/v1/users/{user}/devices/{device}/stats", device_stats, methods=["GET"]),
    Route("/v3/users/{user}/devices/{device}/stats", device_stats, methods=["GET"]),
]
