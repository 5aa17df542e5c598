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

import asyncio
import contextlib
import logging
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from roost.api.access import authorize
from roost.api.errors import error_response, status_of
from roost.api.json import dumps, parse_json
from roost.api.resources import split_path
from roost.api.stream_access import StreamAccess
from roost.bus.base import DeviceKey
from roost.devices.outbox import Outbox
from roost.errors import InvalidInput, RoostError
from roost.services import Services

log = logging.getLogger("roost.api")

MAX_MESSAGE = 64 * 1024
MAX_INTERVAL_S = 86_400
POLICY_VIOLATION = 1008  # the WebSocket close code of a socket whose access ended
MAX_CLOSE_REASON = 123  # bytes a close frame can carry


async def device_socket(websocket: WebSocket) -> None:
    owner, device_id = websocket.path_params["user"], websocket.path_params["device"]
    services: Services = websocket.app.state.services
    access = StreamAccess(websocket, "AccessDeviceResources", owner, device_id)
    try:
        await access.open()
    except RoostError as exc:
        await _deny(websocket, exc)
        return
    await websocket.accept()
    writes = websocket.url.path.startswith("/v2/")
    await _StreamClient(websocket, services, DeviceKey(owner, device_id), writes).run(access)


async def _deny(websocket: WebSocket, exc: RoostError) -> None:
    try:
        await websocket.send_denial_response(error_response(status_of(exc), exc.message))
    except RuntimeError:  # the server cannot answer a handshake with HTTP: close instead
        await websocket.close(code=1008, reason=exc.message[:120])


class _StreamClient:
    def __init__(
        self, websocket: WebSocket, services: Services, key: DeviceKey, writes: bool
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.key = key
        self.writes = writes
        self.outbox = Outbox(services.settings.stream_outbox_frames)  # the sink of every watch
        self.watched: set[tuple[str, ...]] = set()

    async def run(self, access: StreamAccess) -> None:
        """Serve the socket until the client leaves or its access ends (then close it, 1008)."""
        devices = self.services.devices
        sender = asyncio.create_task(self._send_frames())
        reader = asyncio.create_task(self._read_messages())
        guard = asyncio.create_task(access.lost())
        reason: str | None = None
        try:
            done, _ = await asyncio.wait((reader, guard), return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                reader.result()  # what broke it, if anything did
            else:
                reason = guard.result()
        finally:
            for task in (reader, guard, sender):
                task.cancel()
            for path in self.watched:
                devices.unwatch(self.key, path, self.outbox)
            self.watched.clear()
            await asyncio.gather(reader, guard, sender, return_exceptions=True)
        if reason is not None:
            log.info("stream socket on %s closed: %s", self.key, reason)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(POLICY_VIOLATION, _close_reason(reason))

    async def _read_messages(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                data = text.encode() if text is not None else message.get("bytes") or b""
                await self._handle(data)

    async def _send_frames(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                for frame in await self.outbox.take():
                    await self.websocket.send_text(dumps(frame).decode())

    async def _handle(self, data: bytes) -> None:
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


def _close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds, on a character boundary."""
    return reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")


routes = [
    WebSocketRoute("/v3/users/{user}/devices/{device}/resources", device_socket),
    WebSocketRoute("/v2/users/{user}/devices/{device}", device_socket),
]
