"""The legacy Thinger protocol listener (port 25200): bytes -> Decoder -> session, in order.

One asyncio Protocol per connection and no task per message. A connection must authenticate
within ``auth_timeout``; reading pauses while its credentials are checked. Malformed or oversized
frames close the connection with a log line; nothing a device sends can raise past this module.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from roost.devices.gateway import DeviceGateway
from roost.devices.session import DeviceSession, Operation
from roost.errors import DecodeError
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE_BYTES, KeepAlive, Message, Signal
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.net.legacy")

_AUTH_OK = legacy.encode(Message(signal=Signal.REQUEST_OK))
_AUTH_ERROR = legacy.encode(Message(signal=Signal.REQUEST_ERROR))
# Device-initiated messages that wait for an answer we cannot give yet (buckets, endpoints...).
_UNSUPPORTED = frozenset(
    {
        Signal.CALL_ENDPOINT,
        Signal.CALL_DEVICE,
        Signal.BUCKET_DATA,
        Signal.GET_PROPERTY,
        Signal.SET_PROPERTY,
    }
)


class LegacyConnection(asyncio.Protocol):
    def __init__(self, gateway: DeviceGateway) -> None:
        self._gateway = gateway
        settings = gateway.settings
        self._decoder = legacy.Decoder(
            max_frame=settings.max_frame_bytes, max_depth=settings.max_pson_depth
        )
        self._transport: asyncio.Transport | None = None
        self._ip: str | None = None
        self._session: DeviceSession | None = None
        self._waiting: list[legacy.Frame] | None = None  # frames that arrived during auth
        self._auth_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._rx_before_auth = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but implement its interface
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._ip = peer[0] if peer else None
        loop = asyncio.get_running_loop()
        self._auth_timer = loop.call_later(
            self._gateway.settings.auth_timeout, self.close, "did not authenticate in time"
        )

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            frames = self._decoder.feed(data)
        except DecodeError as exc:
            self.close(f"bad frame: {exc.message}")
            return
        session = self._session
        if session is not None:
            session.count_traffic(len(data), 0, asyncio.get_running_loop().time())
        else:
            self._rx_before_auth += len(data)
        for frame in frames:
            if self._closing:
                return
            self._dispatch(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self._session is not None:
            reason = "connection lost" if exc is None else f"connection lost: {exc}"
            self._gateway.end_session(self._session, reason)

    # Link (used by the session)

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None:
        resource: list[PsonValue] = list(path) if op is Operation.CALL else [*path, "api"]
        self._write(legacy.encode(Message(stream_id=stream_id, resource=resource, payload=payload)))

    def close(self, reason: str) -> None:
        if self._closing or self._transport is None:
            return
        self._closing = True
        if self._session is None:
            log.info("device connection from %s closed: %s", self._ip, reason)
        else:
            self._gateway.end_session(self._session, reason)
        self._transport.abort()

    # internals

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        transport.write(data)
        if self._session is not None:
            self._session.count_traffic(0, len(data), 0.0)
        if transport.get_write_buffer_size() > self._gateway.settings.outbox_limit_bytes:
            self.close("device is not reading (outbox full)")

    def _dispatch(self, frame: legacy.Frame) -> None:
        if self._waiting is not None:
            self._waiting.append(frame)
        elif self._session is None:
            self._start_auth(frame)
        elif isinstance(frame, KeepAlive):
            self._write(KEEP_ALIVE_BYTES)
        else:
            self._on_message(self._session, frame)

    def _start_auth(self, frame: legacy.Frame) -> None:
        resource = frame.resource if isinstance(frame, Message) else None
        if (
            not isinstance(frame, Message)
            or frame.signal != Signal.AUTH
            or not isinstance(resource, list)
            or len(resource) != 3
            or not all(isinstance(part, str) for part in resource)
        ):
            self.close("first message is not a valid AUTH")
            return
        assert self._transport is not None
        if self._auth_timer is not None:  # the device was on time; checking is our business
            self._auth_timer.cancel()
        self._transport.pause_reading()
        self._waiting = []
        user, device, credentials = (str(part) for part in resource)
        self._gateway.spawn(self._authenticate(user, device, credentials))

    async def _authenticate(self, user: str, device: str, credentials: str) -> None:
        key = await self._gateway.authenticate(user, device, credentials, self._ip)
        if self._closing or self._transport is None:
            return
        if key is None:
            self._transport.write(_AUTH_ERROR)
            self._closing = True
            self._transport.close()
            return
        self._session = self._gateway.open_session(key, self, self._ip)
        self._session.count_traffic(self._rx_before_auth, 0, asyncio.get_running_loop().time())
        self._write(_AUTH_OK)
        waiting, self._waiting = self._waiting or [], None
        self._transport.resume_reading()
        for frame in waiting:
            if self._closing:
                return
            self._dispatch(frame)

    def _on_message(self, session: DeviceSession, message: Message) -> None:
        signal = message.signal
        if signal == Signal.REQUEST_OK or signal == Signal.REQUEST_ERROR:
            if not session.resolve(message.stream_id, signal == Signal.REQUEST_OK, message.payload):
                log.debug("device %s: reply to unknown stream %d", session.key, message.stream_id)
        elif signal in _UNSUPPORTED:
            log.debug("device %s: unsupported message with flag %d", session.key, signal)
            # The device waits for an answer when it set a stream id, and always for a property.
            if message.stream_id or signal == Signal.GET_PROPERTY:
                self._write(
                    legacy.encode(Message(stream_id=message.stream_id, signal=Signal.REQUEST_ERROR))
                )
        else:
            log.debug("device %s: ignored message with flag %d", session.key, signal)
