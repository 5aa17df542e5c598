"""Device statistics: JSON, or a Server-Sent Events stream of every change.

The stream sends the current stats at once, then again whenever they change (connect, disconnect,
traffic), at most once per ``sse_min_interval`` seconds, and a comment line every
``sse_keepalive`` seconds so proxies keep the connection open. It ends when the client leaves, or
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
from roost.bus.base import DeviceKey
from roost.services import Services

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
    changed = services.devices.watch_stats(key)
    lost = asyncio.ensure_future(access.lost())
    try:
        while not lost.done():
            changed.clear()
            stats = await services.devices.stats(key)
            yield b"data: " + dumps(stats.to_json()) + b"\n\n"
            await asyncio.wait((lost,), timeout=settings.sse_min_interval)
            while not changed.is_set() and not lost.done():
                await _first(lost, changed.wait(), settings.sse_keepalive)
                if not changed.is_set() and not lost.done():
                    yield b": keep-alive\n\n"
        reason = lost.result()
        log.info("stats stream of %s ended: %s", key, reason)
        yield b"event: error\ndata: " + dumps({"error": {"message": reason}}) + b"\n\n"
    finally:
        lost.cancel()
        services.devices.unwatch_stats(key, changed)


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
