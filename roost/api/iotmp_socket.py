"""IOTMP over WebSocket: ``GET /iotmp`` (subprotocol ``iotmp``) on the HTTP ports.

IOTMP-Linux can reach a server through ``wss://host/iotmp`` when only HTTPS gets through. The
WebSocket carries the same byte stream as TCP port 25204, in binary or text frames (the client
library sends text frames), so the connection is the ordinary :class:`IotmpConnection`, fed
through a small transport that turns writes into WebSocket messages. Device credentials travel
in the CONNECT message, as on TCP: the HTTP handshake needs no token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from roost.net.iotmp import IotmpConnection
from roost.services import Services

SUBPROTOCOL = "iotmp"


async def iotmp_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    transport = _SocketTransport(websocket)
    connection = IotmpConnection(services.gateway)
    connection.connection_made(transport)  # type: ignore[arg-type]
    sender = asyncio.create_task(transport.send_pending())
    try:
        while not transport.is_closing():
            await transport.readable.wait()
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            data = text.encode() if text is not None else message.get("bytes") or b""
            connection.data_received(data)
    except WebSocketDisconnect:
        pass
    finally:
        transport.close()
        connection.connection_lost(None)
        await sender


class _SocketTransport:
    """The part of asyncio.Transport a device connection uses, over one WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._closing = False
        self.readable = asyncio.Event()
        self.readable.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        client = self._websocket.client
        if name == "peername" and client is not None:
            return (client.host, client.port)
        return default

    def write(self, data: bytes) -> None:
        if not self._closing:
            self._pending.append(data)
            self._pending_bytes += len(data)
            self._wake.set()

    def get_write_buffer_size(self) -> int:
        return self._pending_bytes

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Send what is pending, then close the WebSocket."""
        self._closing = True
        self._wake.set()
        self.readable.set()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self.close()

    async def send_pending(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    data = self._pending.popleft()
                    self._pending_bytes -= len(data)
                    await self._websocket.send_bytes(data)
                if self._closing:
                    await self._websocket.close()
                    return


routes = [WebSocketRoute("/iotmp", iotmp_socket)]
