"""The HTTP connection protocol: uvicorn's httptools protocol with a bounded request head, each
response in one send, and a direct path for the routes that answer without ASGI.

httptools buffers a header line until it is complete, with no limit of its own, so one client
could make a connection hold megabytes with a single endless header. Here the bytes received
while a request's head (request line and headers) is incomplete are counted, and past
``MAX_HEAD_BYTES`` the request is answered 431 and the connection closed.

uvicorn writes a response's status line and headers, then its body, in two calls: two syscalls
and two TCP segments for every answer. :class:`JoinedWrites` holds a write until the next one,
which takes it along, until the response is complete, or until the end of the loop step: a plain
response leaves in one send, a streamed one (SSE) still gets its head out at once.

A request the app's :data:`Direct` hook takes (the resource calls, the hot path of the API) skips
the ASGI middleware and its two ``send`` messages: uvicorn parses it and keeps its bookkeeping
(the request cycle, pipelining, keep-alive, shutdown, disconnects), the hook's coroutine answers
``(status, headers, body)``, and the protocol writes that in one send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from starlette.types import Receive, Scope
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

log = logging.getLogger("roost.http")

# What a direct answer is: status, header lines (lower-case names), body.
Answer = tuple[int, Sequence[tuple[bytes, bytes]], bytes]
# The hook: the coroutine that answers this request, or None to leave it to the ASGI app. It gets
# the request's ASGI scope and ``receive`` (for a body) and must not raise: errors are answers.
Direct = Callable[[Scope, Receive], Coroutine[Any, Any, Answer] | None]

MAX_HEAD_BYTES = 64 * 1024
_BODY = b'{"error":{"message":"request line and headers over 64 KiB"}}'
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


_INTERNAL_ERROR = b"Internal Server Error"  # as uvicorn answers an ASGI app's crash
_INTERNAL_ERROR_HEADERS = (
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(_INTERNAL_ERROR)),
)


class JoinedWrites:
    """The transport as a response cycle sees it: a write waits for the next one, at most until
    the end of the loop step."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)  # the caller may reuse a bytearray; bytes are not copied
            self._loop.call_soon(self.flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def flush(self) -> None:
        """Send what is held now (the response is complete: nothing will join it)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else a newer uvicorn may ask for
        return getattr(self._transport, name)


class BoundedHttpProtocol(HttpToolsProtocol):
    _in_head = True
    _head_bytes = 0
    _joined: JoinedWrites | None = None

    def __init__(self, *args: Any, direct: Direct | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct = direct

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        # the cycle just made (or, after a WebSocket upgrade, the last one, or none yet)
        if self.cycle is not None:
            if self._joined is None:
                self._joined = JoinedWrites(self.transport, self.loop)
            self.cycle.transport = cast(asyncio.Transport, self._joined)

    def on_response_complete(self) -> None:
        # A head with no body (HEAD) or a stream's last chunk leaves now, before anything the
        # protocol itself may write or close next (400, 431, shutdown).
        if self._joined is not None:
            self._joined.flush()
        super().on_response_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Called for each request in turn, pipelined ones included; `app` is not the app when
        # uvicorn answers 503 itself (over its concurrency limit).
        if self._direct is not None and app is self.app:
            answer = self._direct(cast(Scope, cycle.scope), cast(Receive, cycle.receive))
            if answer is not None:
                task = self.loop.create_task(self._answer_directly(cycle, answer))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    async def _answer_directly(
        self, cycle: RequestResponseCycle, answer: Coroutine[Any, Any, Answer]
    ) -> None:
        """Await the hook's answer and send it as uvicorn's cycle would have sent it."""
        try:
            status, headers, body = await answer
        except Exception:  # a bug: the hook answers its errors itself
            log.exception("unexpected error answering %s", cycle.scope["path"])
            status, headers, body = 500, _INTERNAL_ERROR_HEADERS, _INTERNAL_ERROR
            cycle.keep_alive = False
        except BaseException:  # cancelled at shutdown: nothing will answer this request
            self.transport.close()
            raise
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        cycle.response_started = True
        out = [STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            out += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            out.append(body)
        self.transport.write(b"".join(out))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()
