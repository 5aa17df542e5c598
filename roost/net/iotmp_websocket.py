"""IOTMP over WebSocket: ``GET /iotmp`` (subprotocol ``iotmp``) on the HTTP ports.

IOTMP-Linux reaches a server through ``wss://host/iotmp`` when only HTTPS gets through, and
writes its IOTMP byte stream in TEXT frames that are usually not valid UTF-8. uvicorn's
WebSocket implementations (websockets, wsproto) refuse those (close 1007) and cannot be told not
to, so Roost answers this one path itself, with the sans-IO codec of :mod:`roost.wire.websocket`:

* :class:`IotmpWebSockets` is given to uvicorn as its ``ws`` protocol class. uvicorn calls it
  for every WebSocket upgrade request (``config``, ``server_state``, ``app_state`` keywords),
  hands it the transport, then the request head (``data_received``), then switches the
  transport to it. Any path but ``/iotmp`` is handed, head and transport, to uvicorn's own
  WebSocket protocol (the resource streams of :mod:`roost.api.streams`), unchanged.
* On ``/iotmp`` the connection is an ordinary :class:`~roost.net.iotmp.IotmpConnection` (a
  subclass names it apart in the metrics), as on port 25204: TEXT and BINARY payloads alike are
  its bytes, and it writes through a transport that wraps each write in a data frame of the kind
  the device last sent (BINARY before any).
  The device authenticates in its CONNECT message; the unauthenticated bounds (auth timeout,
  admission, frame limit) are the connection's own. Pings are answered; a CLOSE is echoed.

The client address is the transport's peer, or, when uvicorn trusts proxy headers from that
peer (``proxy_headers`` and ``forwarded_allow_ips`` of its Config), the one uvicorn's own
:class:`~uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware` reads from X-Forwarded-For,
so the same rule decides for ``/iotmp`` as for the rest of the API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

from roost.devices.gateway import DeviceGateway
from roost.errors import DecodeError
from roost.net.batch import WriteBatch
from roost.net.iotmp import IotmpConnection
from roost.wire import websocket
from roost.wire.websocket import CloseCode, Opcode

log = logging.getLogger("roost.net.websocket")

PATH = b"/iotmp"
SUBPROTOCOL = b"iotmp"

Address = tuple[str, int]
# what uvicorn calls to make a WebSocket protocol (a class, or this module's factory)
ProtocolFactory = Callable[..., asyncio.Protocol]


class IotmpWebSockets:
    """uvicorn's ``ws`` protocol factory: ``/iotmp`` served here, other paths by ``others``
    (uvicorn's default WebSocket protocol unless given)."""

    def __init__(
        self,
        gateway: DeviceGateway,
        writes: WriteBatch | None = None,
        others: ProtocolFactory | None = None,
    ) -> None:
        if others is None:
            if AutoWebSocketsProtocol is None:
                raise RuntimeError("uvicorn finds no WebSocket library (install websockets)")
            others = AutoWebSocketsProtocol
        self.gateway = gateway
        self.writes = writes
        self.others = others
        self._proxies: tuple[Config, ProxyHeadersMiddleware] | None = None

    def __call__(
        self, *, config: Config, server_state: Any, app_state: dict[str, Any]
    ) -> asyncio.Protocol:
        return IotmpWebSocket(self, config, server_state, app_state)

    def client(
        self, config: Config, peer: Address | None, request: websocket.Handshake
    ) -> Address | None:
        """The client address as uvicorn would put it in the request's scope."""
        if not config.proxy_headers or peer is None:
            return peer
        proxies = self._proxies
        if proxies is None or proxies[0] is not config:
            middleware = ProxyHeadersMiddleware(_capture, trusted_hosts=config.forwarded_allow_ips)
            proxies = self._proxies = (config, middleware)
        scope: dict[str, Any] = {"type": "websocket", "client": peer, "headers": request.headers}
        # The middleware rewrites the scope and awaits the app, which returns at once: the
        # coroutine ends at its first step. Anything else is a uvicorn this code does not know.
        step = proxies[1](scope, _no_receive, _no_send)  # type: ignore[arg-type]
        try:
            step.send(None)
        except StopIteration:
            return cast(Address, scope["client"])
        step.close()
        raise RuntimeError("uvicorn's ProxyHeadersMiddleware no longer answers synchronously")


async def _capture(scope: Any, receive: Any, send: Any) -> None:
    """The app behind the proxy-headers middleware: the scope it rewrote is all we need."""


async def _no_receive() -> Any:
    raise RuntimeError("not an app")


async def _no_send(message: Any) -> None:
    raise RuntimeError("not an app")


class MessageTransport:
    """The transport an :class:`IotmpConnection` writes to: each write one WebSocket data frame,
    TEXT or BINARY as the device's last message; ``close`` says goodbye with a CLOSE frame."""

    def __init__(self, transport: asyncio.Transport, client: Address | None) -> None:
        self._transport = transport
        self._client = client
        self.opcode = Opcode.BINARY
        self.close_sent = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._client
        return self._transport.get_extra_info(name, default)

    def write(self, data: bytes) -> None:
        if not self.close_sent:
            self._transport.write(websocket.encode_frame(self.opcode, data))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_closing(self) -> bool:
        return self.close_sent or self._transport.is_closing()

    def send_close(self, code: int | None, reason: str = "") -> None:
        """Send a CLOSE frame (``code`` None: with no body) and close once what is pending has
        left."""
        if not self.close_sent and not self._transport.is_closing():
            self.close_sent = True
            self._transport.write(websocket.encode_close(code, reason))
        self._transport.close()

    def close(self) -> None:
        self.send_close(CloseCode.NORMAL)

    def abort(self) -> None:
        self.close_sent = True
        self._transport.abort()


class IotmpWebSocketConnection(IotmpConnection):
    """An IOTMP device connection over ``/iotmp``: the same, labelled apart in the metrics."""

    __slots__ = ()
    PROTOCOL = "iotmp_websocket"


class IotmpWebSocket(asyncio.Protocol):
    """One WebSocket upgrade: ``/iotmp`` served as a device connection, anything else handed on."""

    def __init__(
        self,
        factory: IotmpWebSockets,
        config: Config,
        server_state: Any,
        app_state: dict[str, Any],
    ) -> None:
        self._factory = factory
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._transport: asyncio.Transport | None = None
        self._messages: MessageTransport | None = None
        self._device: IotmpConnection | None = None
        self._decoder = websocket.Decoder()
        self._client: Address | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        device, messages = self._device, self._messages
        if device is None or messages is None:
            if self._transport is not None and not self._transport.is_closing():
                self._upgrade(data)  # uvicorn passes the upgrade request's head first
            return
        if messages.is_closing():
            return
        try:
            events = self._decoder.feed(data)
        except DecodeError as exc:
            log.info("device WebSocket from %s closed: %s", self._client, exc.message)
            messages.send_close(CloseCode.PROTOCOL_ERROR, exc.message)
            return
        for event in events:
            if messages.is_closing():
                return
            if isinstance(event, websocket.Data):
                messages.opcode = Opcode.TEXT if event.text else Opcode.BINARY
                device.data_received(event.payload)
            elif isinstance(event, websocket.Ping):
                self._pong(event.payload)
            elif isinstance(event, websocket.Close):
                # echo its code (RFC 6455 5.5.1); the device connection ends in connection_lost
                messages.send_close(event.code)

    def eof_received(self) -> bool | None:
        if self._device is not None:
            self._device.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_state.connections.discard(self)
        if self._device is not None:
            self._device.connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: say goodbye (1001) and close."""
        if self._messages is not None:
            self._messages.send_close(CloseCode.GOING_AWAY, "server shutting down")
        elif self._transport is not None:
            self._transport.close()

    # internals

    def _pong(self, payload: bytes) -> None:
        messages = self._messages
        assert messages is not None and self._transport is not None
        if messages.get_write_buffer_size() > self._factory.gateway.settings.outbox_limit_bytes:
            log.info("device WebSocket from %s closed: not reading its pongs", self._client)
            messages.abort()
            return
        self._transport.write(websocket.encode_frame(Opcode.PONG, payload))

    def _upgrade(self, head: bytes) -> None:
        transport = self._transport
        assert transport is not None
        try:
            request = websocket.handshake(head)
        except DecodeError as exc:
            self._refuse(websocket.refusal(400, exc.message))
            return
        if request.path != PATH:
            self._hand_on(transport, head)
            return
        answer = websocket.answer(request, SUBPROTOCOL)
        if not answer.accepted:
            self._refuse(answer)
            return
        peer = transport.get_extra_info("peername")
        address = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple | list) else None
        self._client = self._factory.client(self._config, address, request)
        transport.write(answer.data)
        self._server_state.connections.add(self)
        self._messages = MessageTransport(transport, self._client)
        self._device = IotmpWebSocketConnection(self._factory.gateway, self._factory.writes)
        self._device.connection_made(self._messages)  # type: ignore[arg-type]

    def _hand_on(self, transport: asyncio.Transport, head: bytes) -> None:
        """Give this connection to uvicorn's own WebSocket protocol, as uvicorn would have."""
        other = self._factory.others(
            config=self._config, server_state=self._server_state, app_state=self._app_state
        )
        other.connection_made(transport)
        transport.set_protocol(other)
        other.data_received(head)

    def _refuse(self, answer: websocket.Answer) -> None:
        assert self._transport is not None
        log.info("refused a WebSocket upgrade to %s: %s", PATH.decode(), answer.reason)
        self._transport.write(answer.data)
        self._transport.close()
