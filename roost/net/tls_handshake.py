"""HTTPS without uvicorn's TLS: each connection is accepted as plain TCP, counted as pending at
once, and upgraded here with ``loop.start_tls`` before the HTTP protocol sees it.

Given an SSL context, uvicorn opens its listener with ``create_server(ssl=...)`` and no handshake
timeout: a connection that never finishes its handshake held a descriptor for asyncio's default
60 s, and the HTTP protocol, which counts pending connections
(:class:`roost.net.http_admission.PendingConnections`), only heard of it once the handshake was
done. A flood of silent TLS connections was bounded neither in time nor in number.

So the HTTPS port is served like the HTTP one, without ``ssl``, and its protocol factory
(:func:`tls_protocol`) wraps each HTTP protocol in a :class:`TlsHandshake`, which on
``connection_made``:

- counts the connection as pending (the same :class:`PendingConnections` as plain HTTP: the same
  share per address, the same oldest-first eviction); refused, it is closed at once;
- runs ``loop.start_tls(server_side=True)`` with the time left of ``header_timeout``;
- then hands the TLS transport to the HTTP protocol, which takes over the pending count and has
  until the SAME deadline, ``header_timeout`` from the TCP accept, to send its first request head.

A connection therefore has ``header_timeout`` for handshake and first head together, as a plain
one has for its head: the bound does not double over TLS. uvicorn still sees HTTPS: it reads the
scheme from the transport (``get_extra_info("sslcontext")``), so scopes say ``https``/``wss``.

Two races of a handshake started from ``connection_made``, both handled here:

- uvloop starts reading a connection as soon as ``connection_made`` returns (``pause_reading``
  there does nothing), before ``start_tls`` can run in a task: the ClientHello usually arrives
  first, here. It is kept, reading is paused, and it is handed to the TLS protocol ``start_tls``
  puts on the TCP transport (``get_protocol()``) by a callback scheduled just before the call: it
  runs once ``start_tls`` has installed that protocol, which takes bytes before its
  ``connection_made`` (into its incoming buffer) as well as during the handshake;
- asyncio's own loop decrypts the application data that came with the client's last handshake
  flight before ``start_tls`` returns: until the hand-over this object is the TLS transport's
  protocol, and it keeps such events and replays them, in order, to the HTTP protocol.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any, cast

from roost.net.http import BoundedHttpProtocol
from roost.net.http_admission import PendingConnections

log = logging.getLogger("roost.http")

# What start_tls is given when the deadline is (about) reached: it refuses a timeout of 0.
_LAST_MOMENT = 0.001

# Where a connection is: its TCP transport is this object's, start_tls has it, the HTTP protocol
# has the TLS transport, or the handshake failed.
TCP, HANDSHAKE, HTTP, FAILED = "tcp", "handshake", "http", "failed"

Event = Callable[[asyncio.BaseProtocol, asyncio.Transport], object]


class TlsHandshake(asyncio.Protocol):
    """One HTTPS connection from its TCP accept until its TLS handshake is done."""

    def __init__(
        self,
        http: BoundedHttpProtocol,
        context: ssl.SSLContext,
        header_timeout: float,
        pending: PendingConnections | None,
    ) -> None:
        self._http = http
        self._context = context
        self._timeout = header_timeout
        self._pending = pending
        # uvicorn's open connections: shut down (closed, here) when the server stops
        self._connections = cast(set[Any], http.connections)
        self._phase = TCP
        self._tcp: asyncio.Transport | None = None
        self._tls: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._hello = b""  # TCP bytes read before start_tls took the transport
        self._early: list[Event] = []  # TLS events before the hand-over, in order

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp = self._tcp = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        opened = loop.time()
        peer = tcp.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else None
        if self._pending is not None and not self._pending.admit(self, address):
            tcp.close()
            return
        self._connections.add(self)
        tcp.pause_reading()  # asyncio: the ClientHello waits for start_tls, which resumes reading
        self._task = loop.create_task(self._handshake(tcp, opened))

    def evict(self) -> None:
        """Closed to make room for a newer connection (roost.net.http_admission)."""
        if self._tcp is not None:
            self._tcp.close()

    def shutdown(self) -> None:
        """The server stops (uvicorn calls this on each of its connections)."""
        self.evict()

    async def _handshake(self, tcp: asyncio.Transport, opened: float) -> None:
        loop = asyncio.get_running_loop()
        left = opened + self._timeout - loop.time()
        if self._hello:
            loop.call_soon(self._give_hello, tcp)  # runs after start_tls's first, synchronous part
        self._phase = HANDSHAKE
        try:
            tls = await loop.start_tls(
                tcp,
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=max(left, _LAST_MOMENT),
            )
        except Exception as exc:  # timed out, evicted, closed by the client, not TLS at all
            log.debug("TLS handshake from %s failed: %r", tcp.get_extra_info("peername"), exc)
            self._failed(tcp)
            return
        except BaseException:  # cancelled: the server stops
            self._failed(tcp)
            raise
        finally:
            self._connections.discard(self)
            if self._pending is not None:
                self._pending.release(self)  # the HTTP protocol counts itself from here
        self._hand_over(cast(asyncio.Transport, tls), opened)

    def _failed(self, tcp: asyncio.Transport) -> None:
        self._phase, self._early = FAILED, []
        tcp.close()

    def _hand_over(self, tls: asyncio.Transport, opened: float) -> None:
        self._phase, self._tls = HTTP, tls
        early, self._early = self._early, []
        if tls.is_closing():  # lost as the handshake ended: the HTTP protocol never hears of it
            return
        tls.set_protocol(self._http)
        self._http.opened_at(opened)  # the first head is due by the handshake's deadline
        self._http.connection_made(tls)
        for event in early:
            protocol = tls.get_protocol()
            if tls.is_closing() or protocol is None:  # refused, or answered and closed already
                break
            event(protocol, tls)

    # Before start_tls: uvloop reads once connection_made returns --------------------------------

    def _keep_hello(self, data: bytes) -> None:
        assert self._tcp is not None
        self._tcp.pause_reading()
        self._hello += data

    def _give_hello(self, tcp: asyncio.Transport) -> None:
        """Hand the kept bytes to the TLS protocol start_tls has put on ``tcp`` by now."""
        hello, self._hello = self._hello, b""
        tls = tcp.get_protocol()
        if tls is self or tcp.is_closing():  # start_tls failed, or the connection is gone
            tcp.close()
            return
        feed(tls, hello)

    # The protocol's events: of the TCP transport, then of the TLS one until the hand-over -------

    def _relay(self, event: Event) -> None:
        if self._phase == HANDSHAKE:
            self._early.append(event)
        elif self._phase == HTTP and self._tls is not None:
            protocol = self._tls.get_protocol()  # None once the connection is lost
            if protocol is not None and protocol is not self:
                event(protocol, self._tls)  # scheduled before the hand-over: passed on
        # FAILED: a callback scheduled as the handshake failed, for nobody

    def data_received(self, data: bytes) -> None:
        if self._phase == TCP:
            self._keep_hello(data)
        else:
            self._relay(lambda protocol, _: feed(protocol, data))

    def eof_received(self) -> None:  # over TLS the connection shuts down whatever this says
        if self._phase != TCP:  # (half closed before the handshake: closed too)
            self._relay(lambda protocol, _: cast(asyncio.Protocol, protocol).eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._phase != TCP:
            self._relay(lambda protocol, _: protocol.connection_lost(exc))
            return
        self._phase = FAILED  # closed before the handshake began
        if self._task is not None:
            self._task.cancel()
        self._connections.discard(self)
        if self._pending is not None:
            self._pending.release(self)

    def pause_writing(self) -> None:
        self._relay(lambda protocol, _: protocol.pause_writing())

    def resume_writing(self) -> None:
        self._relay(lambda protocol, _: protocol.resume_writing())


def feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver ``data`` to ``protocol`` as a transport would, buffered protocol or not."""
    get_buffer = getattr(protocol, "get_buffer", None)
    if get_buffer is None:
        cast(asyncio.Protocol, protocol).data_received(data)
        return
    rest = memoryview(data)
    while rest:
        buffer = memoryview(get_buffer(len(rest)))
        size = min(len(buffer), len(rest))
        buffer[:size] = rest[:size]
        cast(asyncio.BufferedProtocol, protocol).buffer_updated(size)
        rest = rest[size:]


def tls_protocol(
    http: Callable[..., BoundedHttpProtocol],
    context: ssl.SSLContext,
    header_timeout: float,
    pending: PendingConnections | None,
) -> Callable[..., TlsHandshake]:
    """The protocol factory uvicorn is given (as ``http=``) for an HTTPS port served without
    ``ssl``: each connection's HTTP protocol, made with uvicorn's arguments, behind a
    handshake."""

    def connection(**kwargs: Any) -> TlsHandshake:
        return TlsHandshake(http(**kwargs), context, header_timeout, pending)

    return connection
