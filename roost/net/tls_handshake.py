"""TLS without asyncio's ``create_server(ssl=...)``: each connection is accepted as plain TCP,
counted at once among the connections that have proved nothing, and upgraded here with
``loop.start_tls`` before the protocol behind it sees it. The HTTPS port and the device TLS ports
(legacy and IOTMP) are served this way.

With an SSL context, ``create_server`` calls a protocol's ``connection_made`` only once the
handshake is done: a connection that never finished its handshake held a descriptor (uvicorn
gives no handshake timeout: asyncio's default 60 s) and was counted nowhere, neither as a pending
HTTP connection (:class:`roost.net.http_admission.PendingConnections`) nor as a device connection
authenticating (:class:`roost.devices.admission.Admission`). A flood of silent TLS connections
was bounded neither in time nor in number, and took every descriptor.

So those ports listen without ``ssl``, and their protocol factories (:func:`tls_protocol` for
uvicorn, :func:`tls_connections` for the device ports) wrap each inner protocol in a
:class:`TlsHandshake`, which on ``connection_made``:

- counts the connection in its *gate*, the same budget the inner protocol counts itself in (for
  HTTPS the HTTP pending connections: the same share per address, the oldest evicted; for a
  device port the device admission: the same share per address, the busiest address makes
  room); refused, it is closed at once;
- runs ``loop.start_tls(server_side=True)`` with the time left of ``timeout``;
- then hands the TLS transport to the inner protocol, which takes over the count and has until
  the SAME deadline, ``timeout`` from the TCP accept (``opened_at``), to send its first request
  head (``http_header_timeout``) or to authenticate (``auth_timeout``).

A connection therefore has ``timeout`` for handshake and first head (or authentication)
together, as a plain one has: the bound does not double over TLS. uvicorn still sees HTTPS: it
reads the scheme from the transport (``get_extra_info("sslcontext")``), so scopes say
``https``/``wss``.

Two races of a handshake started from ``connection_made``, both handled here:

- uvloop starts reading a connection as soon as ``connection_made`` returns (``pause_reading``
  there does nothing), before ``start_tls`` can run in a task: the ClientHello usually arrives
  first, here. It is kept, reading is paused, and it is handed to the TLS protocol ``start_tls``
  puts on the TCP transport (``get_protocol()``) by a callback scheduled just before the call: it
  runs once ``start_tls`` has installed that protocol, which takes bytes before its
  ``connection_made`` (into its incoming buffer) as well as during the handshake;
- asyncio's own loop decrypts the application data that came with the client's last handshake
  flight before ``start_tls`` returns: until the hand-over this object is the TLS transport's
  protocol, and it keeps such events and replays them, in order, to the inner protocol.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from roost.net.http import BoundedHttpProtocol
    from roost.net.http_admission import PendingConnections

log = logging.getLogger("roost.net.tls")

# What start_tls is given when the deadline is (about) reached: it refuses a timeout of 0.
_LAST_MOMENT = 0.001

# Where a connection is: its TCP transport is this object's, start_tls has it, the inner
# protocol has the TLS transport, or the handshake failed.
TCP, HANDSHAKE, INNER, FAILED = "tcp", "handshake", "inner", "failed"

Event = Callable[[asyncio.BaseProtocol, asyncio.Transport], object]


class Gate(Protocol):
    """Where a connection that has proved nothing is counted: the HTTP pending connections
    (:class:`~roost.net.http_admission.PendingConnections`) or the device connections
    authenticating (:class:`~roost.devices.admission.Admission`). Either may call back
    ``evict`` on a connection it counts, to make room for a newer one."""

    def admit(self, connection: Any, address: str | None, /) -> bool: ...

    def release(self, connection: Any, /) -> None: ...


class Inner(Protocol):
    """The protocol a connection is handed to once its handshake is done (an asyncio protocol,
    counting itself in the same gate from its ``connection_made``)."""

    def opened_at(self, when: float) -> None:
        """Accepted at loop time ``when``: its deadline runs from then, not from now."""

    def connection_made(self, transport: Any) -> None: ...


class TlsHandshake(asyncio.Protocol):
    """One connection from its TCP accept until its TLS handshake is done."""

    def __init__(
        self,
        inner: Inner,
        context: ssl.SSLContext,
        timeout: float,
        gate: Gate | None,
        connections: set[Any],
    ) -> None:
        self._inner = inner
        self._context = context
        self._timeout = timeout
        self._gate = gate
        # the open connections of the server: each shut down (closed, here) when it stops
        self._connections = connections
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
        if self._gate is not None and not self._gate.admit(self, address):
            log.debug("refused a TLS connection from %s: its address has used its share", address)
            tcp.close()
            return
        self._connections.add(self)
        tcp.pause_reading()  # asyncio: the ClientHello waits for start_tls, which resumes reading
        self._task = loop.create_task(self._handshake(tcp, opened))

    def evict(self, reason: str = "made room for a newer connection") -> None:
        """Closed to make room for a newer connection (the gate no longer counts it)."""
        if self._tcp is not None:
            log.debug(
                "TLS connection from %s closed: %s", self._tcp.get_extra_info("peername"), reason
            )
            self._tcp.close()

    def shutdown(self) -> None:
        """The server stops (uvicorn calls this on each of its connections)."""
        if self._tcp is not None:
            self._tcp.close()

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
            if self._gate is not None:
                self._gate.release(self)  # the inner protocol counts itself from here
        self._hand_over(cast(asyncio.Transport, tls), opened)

    def _failed(self, tcp: asyncio.Transport) -> None:
        self._phase, self._early = FAILED, []
        tcp.close()

    def _hand_over(self, tls: asyncio.Transport, opened: float) -> None:
        self._phase, self._tls = INNER, tls
        early, self._early = self._early, []
        if tls.is_closing():  # lost as the handshake ended: the inner protocol never hears of it
            return
        tls.set_protocol(cast(asyncio.BaseProtocol, self._inner))
        self._inner.opened_at(opened)  # its deadline is the handshake's
        self._inner.connection_made(tls)
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
        elif self._phase == INNER and self._tls is not None:
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
        if self._gate is not None:
            self._gate.release(self)

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
    ``ssl``: each connection's HTTP protocol, made with uvicorn's arguments, behind a handshake
    counted as a pending connection and sharing ``header_timeout`` with the first head."""

    def connection(**kwargs: Any) -> TlsHandshake:
        inner = http(**kwargs)
        connections = cast(set[Any], inner.connections)  # uvicorn's: shut down when it stops
        return TlsHandshake(inner, context, header_timeout, pending, connections)

    return connection


def tls_connections(
    inner: Callable[[], Inner],
    context: ssl.SSLContext,
    timeout: float,
    gate: Gate | None,
    connections: set[Any],
) -> Callable[[], TlsHandshake]:
    """The protocol factory of a listener served without ``ssl`` (``loop.create_server``): each
    connection's ``inner`` protocol behind a handshake counted in ``gate`` and sharing
    ``timeout`` with what ``inner`` is given to do next; ``connections`` holds the handshakes in
    progress, for the server to shut down when it stops."""
    return lambda: TlsHandshake(inner(), context, timeout, gate, connections)
