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

A connection has ``header_timeout`` seconds, from when it opens (over HTTPS: from the TCP accept,
the TLS handshake included, :mod:`roost.net.tls_handshake`) or from the previous answer, to send a
whole request head: one that sends nothing, or a header a byte at a time, is closed
(408 when part of a head came). uvicorn's ``timeout_keep_alive`` still closes a kept-alive
connection that sends nothing after an answer, sooner; its timer stops at the first byte, this
one does not. Until a request has arrived in full the connection counts in
:class:`roost.net.http_admission.PendingConnections`, which may refuse it, or close it for a
newer one.

A request the app's :data:`Direct` hook takes (the resource calls, the hot path of the API) skips
the ASGI middleware and its two ``send`` messages: uvicorn parses it and keeps its bookkeeping
(the request cycle, pipelining, keep-alive, shutdown, disconnects), the hook's coroutine answers
``(status, headers, body)``, and the protocol writes that in one send.
"""

from __future__ import annotations

import asyncio
import contextvars
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

from roost.net.http_admission import PendingConnections

log = logging.getLogger("roost.http")

# What a direct answer is: status, header lines, body. Written as given: the names lower-case,
# a content-length that is the body's, no connection header (the protocol adds "close").
Answer = tuple[int, Sequence[tuple[bytes, bytes]], bytes]
# The hook: the coroutine that answers this request, or None to leave it to the ASGI app. It gets
# the request's ASGI scope and ``receive`` (for a body); errors are answers, not exceptions.
Direct = Callable[[Scope, Receive], Coroutine[Any, Any, Answer] | None]

MAX_HEAD_BYTES = 64 * 1024
_BODY = b'{"error":{"message":"request line and headers over 64 KiB"}}'
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)
_TIMED_OUT_BODY = b'{"error":{"message":"request head not received in time"}}'
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TIMED_OUT_BODY), _TIMED_OUT_BODY)
)
DEFAULT_HEADER_TIMEOUT = 10.0


_INTERNAL_ERROR_ANSWER: Answer = (  # as uvicorn answers an ASGI app that failed
    500,
    ((b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21")),
    b"Internal Server Error",
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
    _head_deadline: asyncio.TimerHandle | None = None
    _opened: float | None = None  # loop time of the TCP accept, when earlier than connection_made

    def __init__(
        self,
        *args: Any,
        direct: Direct | None = None,
        pending: PendingConnections | None = None,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._direct = direct
        self._pending = pending
        self._header_timeout = header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def opened_at(self, when: float) -> None:
        """The connection was accepted at loop time ``when``, before connection_made (a TLS
        handshake came first): its first head is due ``header_timeout`` from then."""
        self._opened = when

    def evict(self) -> None:
        """Closed to make room for a newer connection (roost.net.http_admission)."""
        self._cancel_head_deadline()
        self.transport.close()

    def _await_request(self) -> None:
        """A request is due: count the connection as pending and start its head's clock."""
        address = self.client[0] if self.client else None
        if self._pending is not None and not self._pending.admit(self, address):
            self.transport.close()
            return
        self._cancel_head_deadline()
        delay = self._header_timeout
        if self._opened is not None:  # the clock started at the TCP accept
            delay -= self.loop.time() - self._opened
            self._opened = None
        self._head_deadline = self.loop.call_later(delay, self._head_timed_out)

    def _stop_waiting(self) -> None:
        self._cancel_head_deadline()
        if self._pending is not None:
            self._pending.release(self)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self._in_head and self._head_bytes:
            self.transport.write(_TIMED_OUT)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_deadline()
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
        idle = not self.pipeline  # else the next request, received already, starts now
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._await_request()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes = True, 0
        if self._pending is not None and not (self.cycle and self.cycle.response_complete):
            self._pending.release(self)  # else answered early: it waits for its next request
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._stop_waiting()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # Called for each request in turn, pipelined ones included; `app` is not the app when
        # uvicorn answers 503 itself (over its concurrency limit).
        if self._direct is not None and app is self.app:
            try:
                answer = self._direct(cast(Scope, cycle.scope), cast(Receive, cycle.receive))
            except Exception:  # a bug in the hook: the app may still answer
                log.exception("direct path failed on %s", cycle.scope["path"])
                answer = None
            if answer is not None:
                # as uvicorn's own: a fresh context when asked to (its reset_contextvars)
                context = contextvars.Context() if self.config.reset_contextvars else None
                task = self.loop.create_task(self._answer_directly(cycle, answer), context=context)
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)

    async def _answer_directly(
        self, cycle: RequestResponseCycle, answer: Coroutine[Any, Any, Answer]
    ) -> None:
        """Await the hook's answer and send it as uvicorn's cycle sends an ASGI app's: an
        exception, or a cancellation (graceful shutdown timed out), is a 500 and a close."""
        try:
            status, headers, body = await answer
        except Exception:  # a bug: the hook answers its errors itself
            log.exception("unexpected error answering %s", cycle.scope["path"])
            self._send(cycle, *_INTERNAL_ERROR_ANSWER, close=True)
            return
        except BaseException:
            self._send(cycle, *_INTERNAL_ERROR_ANSWER, close=True)
            raise
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        self._send(cycle, status, headers, body, close=not cycle.keep_alive)

    def _send(
        self,
        cycle: RequestResponseCycle,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        close: bool,
    ) -> None:
        if cycle.disconnected or cycle.response_started:
            return
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        out = [STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            out += (name, b": ", value, b"\r\n")
        if close:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        if cycle.scope["method"] != "HEAD":
            out.append(body)
        if self._joined is not None:
            self._joined.flush()  # a "100 Continue" written by the body's receive() goes first
        self.transport.write(b"".join(out))
        cycle.response_complete = True
        cycle.message_event.set()
        if close:
            self.transport.close()
        cycle.on_response()
