"""Device statistics: JSON, or a Server-Sent Events stream of every change.

The stream sends the current stats at once, then again whenever they change (connect, disconnect,
traffic), at most once per ``sse_min_interval`` seconds, and a comment line every
``sse_keepalive`` seconds so proxies keep the connection open. It ends when the client leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.devices import find_device
from roost.api.json import dumps, json_response
from roost.bus.base import DeviceKey
from roost.services import Services


async def device_stats(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "ReadDeviceStatistics", owner, device_id)
    services: Services = request.app.state.services
    await find_device(services, owner, device_id)
    key = DeviceKey(owner, device_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _stats_events(services, key),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return json_response((await services.bus.stats(key)).to_json())


async def _stats_events(services: Services, key: DeviceKey) -> AsyncIterator[bytes]:
    settings = services.settings
    changed = services.bus.watch_stats(key)
    try:
        while True:
            changed.clear()
            stats = await services.bus.stats(key)
            yield b"data: " + dumps(stats.to_json()) + b"\n\n"
            await asyncio.sleep(settings.sse_min_interval)
            while not changed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), settings.sse_keepalive)
                if not changed.is_set():
                    yield b": keep-alive\n\n"
    finally:
        services.bus.unwatch_stats(key, changed)


routes = [
    Route("/v1/users/{user}/devices/{device}/stats", device_stats, methods=["GET"]),
    Route("/v3/users/{user}/devices/{device}/stats", device_stats, methods=["GET"]),
]
