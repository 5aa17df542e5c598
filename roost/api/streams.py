"""Live resource streams over WebSocket.

``/v3/users/{user}/devices/{device}/resources`` and the older ``/v2/users/{user}/devices/{device}``
(token as ``?authorization=`` or a Bearer header). The client sends JSON text messages:
- ``{"resource": "temperature", "interval": 1, "enabled": true}`` starts or retunes a stream
  (interval in seconds; 0 = every value the device stream carries),
- ``{"resource": "temperature", "enabled": false}`` stops it,
- v2 only: ``{"resource": "relay", "in": true}`` writes an input.
The server sends ``{"resource": r, "out": v}`` / ``{"resource": r, "in": v}`` for data,
``{"device": d, "connected": false|true}`` when the device leaves or comes back (streams resume by
themselves), and ``{"resource"?: r, "error": {"message": m}}`` for a refused message. Frames wait
in a bounded per-client queue: a client that does not keep up loses the OLDEST frames.

A socket watches at most ``max_stream_subscriptions`` resources at once; a message asking for one
more gets an error frame and the socket stays open. When the access the socket was opened with
ends (token deleted, disabled or expired, password changed, device disabled or deleted: see
:mod:`roost.api.stream_access`) the server closes it with code 1008 (policy violation) and the
reason as the close reason. Every watch is released when the socket closes, however it closes.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from roost.api.access import authorize
from roost.api.json import parse_json
from roost.api.resources import split_path
from roost.api.socket_client import MAX_MESSAGE, SocketClient, accept
from roost.api.stream_access import StreamAccess
from roost.bus.base import DeviceKey
from roost.errors import InvalidInput, RoostError
from roost.services import Services

MAX_INTERVAL_S = 86_400


async def device_socket(websocket: WebSocket) -> None:
    owner, device_id = websocket.path_params["user"], websocket.path_params["device"]
    services: Services = websocket.app.state.services
    access = StreamAccess(websocket, "AccessDeviceResources", owner, device_id)
    if await accept(websocket, access):
        writes = websocket.url.path.startswith("/v2/")
        await _StreamClient(websocket, services, DeviceKey(owner, device_id), writes).run(access)


class _StreamClient(SocketClient):
    def __init__(
        self, websocket: WebSocket, services: Services, key: DeviceKey, writes: bool
    ) -> None:
        super().__init__(websocket, services, f"stream socket on {key}")
        self.key = key
        self.writes = writes
        self.watched: set[tuple[str, ...]] = set()  # the outbox is the sink of every watch

    def release(self) -> None:
        for path in self.watched:
            self.services.devices.unwatch(self.key, path, self.outbox)
        self.watched.clear()

    async def handle(self, data: bytes) -> None:
        resource: str | None = None
        try:
            if len(data) > MAX_MESSAGE:
                raise InvalidInput(f"message larger than {MAX_MESSAGE} bytes")
            message = parse_json(data)
            if not isinstance(message, dict) or not isinstance(message.get("resource"), str):
                raise InvalidInput('a message must be a JSON object with a "resource" string')
            resource = message["resource"]
            path = split_path(resource)
            await authorize(
                self.websocket,
                "AccessDeviceResources",
                self.key.owner,
                self.key.device,
                "/".join(path),
            )
            await self._apply(path, message)
        except RoostError as exc:
            frame: dict[str, Any] = {"error": {"message": exc.message}}
            if resource is not None:
                frame = {"resource": resource, **frame}
            self.outbox.put(frame)

    async def _apply(self, path: tuple[str, ...], message: dict[str, Any]) -> None:
        devices = self.services.devices
        if self.writes and "in" in message:
            timeout = self.services.settings.call_timeout_ms / 1000
            await devices.call(self.key, path, message["in"], timeout)
            return
        enabled = message.get("enabled", True)
        interval = message.get("interval", 0)
        if not isinstance(enabled, bool):
            raise InvalidInput('"enabled" must be true or false')
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise InvalidInput('"interval" must be a number of seconds')
        if not 0 <= interval <= MAX_INTERVAL_S:
            raise InvalidInput(f'"interval" must be between 0 and {MAX_INTERVAL_S} seconds')
        limit = self.services.settings.max_stream_subscriptions
        if enabled and path not in self.watched and len(self.watched) >= limit:
            raise InvalidInput(f"at most {limit} resources can be watched on one connection")
        if enabled:  # watching it again retunes it
            self.watched.add(path)
            devices.watch(self.key, path, float(interval), self.outbox)
        elif path in self.watched:
            self.watched.discard(path)
            devices.unwatch(self.key, path, self.outbox)


routes = [
    WebSocketRoute("/v3/users/{user}/devices/{device}/resources", device_socket),
    WebSocketRoute("/v2/users/{user}/devices/{device}", device_socket),
]
