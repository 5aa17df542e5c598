"""What every live WebSocket of the API does, whatever it carries (resource streams, server
events): open only with the access it is checked for, read the client's JSON messages one by
one, send the frames it is owed from a bounded outbox, and close with code 1008 (policy
violation) and the reason when that access ends (:mod:`roost.api.stream_access`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from roost.api.errors import error_response, status_of
from roost.api.json import dumps
from roost.api.stream_access import StreamAccess
from roost.devices.outbox import Outbox
from roost.errors import RoostError
from roost.services import Services

log = logging.getLogger("roost.api")

MAX_MESSAGE = 64 * 1024  # bytes of one client message
POLICY_VIOLATION = 1008  # the WebSocket close code of a socket whose access ended
MAX_CLOSE_REASON = 123  # bytes a close frame can carry


async def accept(websocket: WebSocket, access: StreamAccess) -> bool:
    """Accept the handshake if ``access`` opens; else answer it with the error, and False."""
    try:
        await access.open()
    except RoostError as exc:
        try:
            await websocket.send_denial_response(error_response(status_of(exc), exc.message))
        except RuntimeError:  # the server cannot answer a handshake with HTTP: close instead
            await websocket.close(code=POLICY_VIOLATION, reason=close_reason(exc.message))
        return False
    await websocket.accept()
    return True


class SocketClient:
    """One client socket; subclasses say what a message does (:meth:`handle`) and what to give
    back when the socket goes (:meth:`release`)."""

    def __init__(self, websocket: WebSocket, services: Services, name: str) -> None:
        self.websocket = websocket
        self.services = services
        self.name = name  # for the log: whose socket this is
        self.outbox = Outbox(services.settings.stream_outbox_frames)

    async def handle(self, data: bytes) -> None:
        """Act on one message; a refused one puts an error frame in the outbox."""
        raise NotImplementedError

    def release(self) -> None:
        """The socket is going: give back what it holds."""

    async def run(self, access: StreamAccess) -> None:
        """Serve the socket until the client leaves or its access ends (then close it, 1008)."""
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
            self.release()
            await asyncio.gather(reader, guard, sender, return_exceptions=True)
        if reason is not None:
            log.info("%s closed: %s", self.name, reason)
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(POLICY_VIOLATION, close_reason(reason))

    async def _read_messages(self) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                data = text.encode() if text is not None else message.get("bytes") or b""
                await self.handle(data)

    async def _send_frames(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                for frame in await self.outbox.take():
                    await self.websocket.send_text(dumps(frame).decode())


def close_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds, on a character boundary."""
    return reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
