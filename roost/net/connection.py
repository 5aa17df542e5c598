"""What every device connection does, whatever its protocol: bytes -> decoder -> frames, in
order, with no task per message; authentication first; a bounded outbox; a clean close.

A connection must send its credentials within ``auth_timeout``; reading pauses while they are
checked (frames that already arrived wait their turn). Malformed or oversized frames close the
connection with a log line: nothing a device sends can raise past this module. What one
connection may take of the event loop, per step and per second, is bounded (:mod:`roost.net.flow`):
past it, reading pauses. Subclasses say how credentials look, how to answer them, and what to do
with each frame once authenticated.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Generic, Protocol, TypeVar, cast

from roost.bus.base import Operation
from roost.devices.gateway import DeviceGateway
from roost.devices.session import DeviceSession
from roost.errors import DecodeError
from roost.net.batch import WriteBatch
from roost.net.flow import STEP_BYTES, STEP_FRAMES, FrameAllowance
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.net")

FrameT = TypeVar("FrameT")


# Authentication frames are small; a connection is trusted with larger frames once it is in.
AUTH_FRAME_LIMIT = 4096
# A device is asked for the same few resources again and again: its connection keeps the encoded
# resource fields of the last few short paths it was asked for.
KEPT_FIELDS = 8
KEPT_FIELD_BYTES = 256
_NOTHING = memoryview(b"")  # no bytes waiting (shared: slicing it makes new views)


class FrameDecoder(Protocol[FrameT]):
    max_frame: int

    def feed(self, data: bytes | memoryview) -> list[FrameT]: ...


def credentials_triple(value: PsonValue) -> tuple[str, str, str] | None:
    """``[user, device, credentials]`` as both protocols send it, or None if malformed."""
    if isinstance(value, list) and len(value) == 3:
        user, device, secret = value
        if isinstance(user, str) and isinstance(device, str) and isinstance(secret, str):
            return user, device, secret
    return None


class DeviceConnection(asyncio.Protocol, Generic[FrameT]):
    # tens of thousands are open at once: slots, not a dict each (subclasses add none)
    __slots__ = (
        "_allowance",
        "_auth_timer",
        "_backlog",
        "_checking",
        "_closing",
        "_decoder",
        "_fields",
        "_gateway",
        "_inbox",
        "_ip",
        "_next_step",
        "_opened",
        "_paused",
        "_rx_before_auth",
        "_session",
        "_transport",
        "_unread",
        "_writes",
    )

    def __init__(
        self,
        gateway: DeviceGateway,
        decoder: FrameDecoder[FrameT],
        writes: WriteBatch | None = None,
    ) -> None:
        self._gateway = gateway
        self._decoder = decoder
        self._writes = writes  # None: each write at once (a WebSocket's transport, tests)
        decoder.max_frame = min(decoder.max_frame, AUTH_FRAME_LIMIT)
        self._transport: asyncio.Transport | None = None
        self._ip: str | None = None
        self._session: DeviceSession | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._checking = False  # credentials being checked: frames wait
        # received, not handled yet (reading is paused while there is any): frames, then bytes,
        # then bytes that came in while paused (a TLS or WebSocket layer may still hand some on).
        # Made when first needed: a connection that is never throttled never holds them.
        self._backlog: deque[FrameT] | None = None
        self._unread = _NOTHING
        self._inbox: bytearray | None = None
        self._paused = False  # reading paused by us
        self._next_step: asyncio.Handle | None = None
        self._allowance: FrameAllowance | None = None  # once in, if device_frame_rate is set
        self._rx_before_auth = 0
        self._fields: dict[tuple[str, ...], bytes] | None = None  # see resource_field
        self._opened: float | None = None  # loop time of the TCP accept, if before connection_made

    PROTOCOL: ClassVar[str]  # the protocol label of the metrics (roost.metrics)

    # for subclasses

    def credentials(self, frame: FrameT) -> tuple[str, str, str] | None:
        """(user, device, credentials) if ``frame`` is a well-formed authentication."""
        raise NotImplementedError

    def auth_reply(self, frame: FrameT, accepted: bool) -> bytes:
        raise NotImplementedError

    def on_frame(self, session: DeviceSession, frame: FrameT) -> bool:
        """Handle one frame of an authenticated device; True if it answered one of our
        requests (those cost the device nothing from its allowance of frames)."""
        raise NotImplementedError

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None:
        """Put a session's request on the wire (part of the Link the session uses)."""
        raise NotImplementedError

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but implement its interface
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._ip = peer[0] if peer else None
        admission = self._gateway.admission
        if not admission.admit(self, self._ip):
            self._closing = True
            if admission.full:  # said once by the admission, not for every device retrying
                log.debug("refused a device connection from %s: no room", self._ip)
            else:
                log.warning(
                    "refused a device connection from %s: too many authenticating", self._ip
                )
            self._transport.abort()
            return
        loop = asyncio.get_running_loop()
        delay = self._gateway.settings.auth_timeout
        if self._opened is not None:  # a TLS handshake came first: one deadline for both
            delay -= loop.time() - self._opened
        self._auth_timer = loop.call_later(delay, self.close, "did not authenticate in time")

    def opened_at(self, when: float) -> None:
        """The connection was accepted at loop time ``when``, before connection_made (a TLS
        handshake came first, :mod:`roost.net.tls_handshake`): it must be in by
        ``auth_timeout`` from then."""
        self._opened = when

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        session = self._session
        if session is None:
            if not self._rx_before_auth:
                self._gateway.admission.heard(self)
            self._rx_before_auth += len(data)
        else:
            session.count_traffic(len(data), 0)
        if self._paused:  # a step to come (or the end of the credentials check) takes it up
            if self._inbox is None:
                self._inbox = bytearray()
            self._inbox += data
            return
        if session is None or len(data) > STEP_BYTES:
            self._unread = memoryview(data)
            self._step()
            return
        # the usual case: a few frames from a device that is in
        frames = self._decode(data)
        if not frames:
            return
        session.heard()
        allowance = self._allowance
        if len(frames) > STEP_FRAMES or (allowance is not None and allowance.tokens < len(frames)):
            self._backlog = deque(frames)
            self._step()
            return
        for frame in frames:
            if self._closing:
                return
            if not self.on_frame(session, frame) and allowance is not None:
                allowance.tokens -= 1

    def eof_received(self) -> bool | None:
        # The device will send no more, but may still read: what is held for it leaves before
        # the transport closes (it would skip a closing transport).
        if self._writes is not None:
            self._writes.flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._admitted_done()
        if self._next_step is not None:
            self._next_step.cancel()
            self._next_step = None
        self._backlog = self._inbox = None
        self._unread = _NOTHING
        if self._session is not None:
            reason = "connection lost" if exc is None else f"connection lost: {exc}"
            self._gateway.end_session(self._session, reason)

    # admission.Waiting

    def evict(self, reason: str) -> None:
        self.close(reason)

    # Link

    def kind(self) -> tuple[str, bool]:
        transport = self._transport
        tls = transport is not None and transport.get_extra_info("sslcontext") is not None
        return self.PROTOCOL, tls

    def close(self, reason: str) -> None:
        if self._closing or self._transport is None:
            return
        self._closing = True
        if self._session is None:
            log.info("device connection from %s closed: %s", self._ip, reason)
        else:
            self._gateway.end_session(self._session, reason)
        self._transport.abort()

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        if self._writes is None:
            transport.write(data)
            outbox = transport.get_write_buffer_size()
        else:
            outbox = self._writes.write(transport, data) + transport.get_write_buffer_size()
        if self._session is not None:
            self._session.count_traffic(0, len(data))
        if outbox > self._gateway.settings.outbox_limit_bytes:
            self.close("device is not reading (outbox full)")

    def resource_field(
        self, path: tuple[str, ...], encode: Callable[[tuple[str, ...]], bytes]
    ) -> bytes:
        """``encode(path)``, kept for the next request naming the same path."""
        fields = self._fields
        if fields is None:
            fields = self._fields = {}
        field = fields.get(path)
        if field is None:
            field = encode(path)
            if len(field) <= KEPT_FIELD_BYTES:
                if len(fields) >= KEPT_FIELDS:
                    fields.clear()
                fields[path] = field
        return field

    # internals

    def _admitted_done(self) -> None:
        """This connection no longer counts as authenticating (in, refused or gone)."""
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self._gateway.admission.release(self)

    def _decode(self, data: bytes | memoryview) -> list[FrameT] | None:
        """The frames ``data`` completes; None (and the connection closed) if it is malformed."""
        try:
            return self._decoder.feed(data)
        except DecodeError as exc:
            self.close(f"bad frame: {exc.message}")
            return None

    def _step(self) -> None:
        """Decode and handle what was received, as far as this loop step's budget and the
        device's allowance go; the rest waits, with reading paused, for the next step or for
        the allowance to grow back."""
        if self._next_step is not None:  # bytes came in while reading was paused (TLS may)
            self._next_step.cancel()
            self._next_step = None
        budget = STEP_FRAMES
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        while not self._closing and not self._checking:
            session = self._session
            if not backlog:
                if not self._unread and self._inbox:
                    self._unread = memoryview(bytes(self._inbox))
                    self._inbox = None
                if not self._unread or budget <= 0:
                    break
                chunk, self._unread = self._unread[:STEP_BYTES], self._unread[STEP_BYTES:]
                frames = self._decode(chunk)
                if frames is None:
                    return
                if frames and session is not None:
                    session.heard()
                backlog.extend(frames)
            elif budget <= 0:
                break
            elif session is None:
                budget -= 1
                self._start_auth(backlog.popleft())
            else:
                allowance = self._allowance
                if allowance is not None and allowance.tokens < 1 and not allowance.refill():
                    self._hold_for(allowance)
                    return
                budget -= 1
                if not self.on_frame(session, backlog.popleft()) and allowance is not None:
                    allowance.tokens -= 1
        if self._closing or self._checking:
            return
        if backlog or self._unread or self._inbox:
            self._pause_for(0.0)
            return
        self._backlog = None  # all handled: a quiet connection holds no buffers
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _hold_for(self, allowance: FrameAllowance) -> None:
        """The device sent more than its allowance: read nothing more until it has grown back,
        or close the connection if that has gone on for too long."""
        delay = allowance.wait()
        if delay is None:
            settings = self._gateway.settings
            self.close(
                f"flooding: over {settings.device_frame_rate} unsolicited frames/s "
                f"for {settings.device_flood_seconds:g} s"
            )
            return
        self._pause_for(delay)

    def _pause_for(self, delay: float) -> None:
        """Read nothing more, and take up what is left in ``delay`` seconds (0: next step)."""
        self._pause()
        if self._next_step is not None:
            self._next_step.cancel()
        loop = asyncio.get_running_loop()
        if delay:
            self._next_step = loop.call_later(delay, self._step)
        else:
            self._next_step = loop.call_soon(self._step)

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _start_auth(self, frame: FrameT) -> None:
        credentials = self.credentials(frame)
        if credentials is None:
            self.close("first message is not a valid authentication")
            return
        if self._auth_timer is not None:  # the device was on time; checking is our business
            self._auth_timer.cancel()
            self._auth_timer = None
        self._pause()
        self._checking = True
        self._gateway.admission.checking(self)
        self._gateway.spawn(self._authenticate(frame, *credentials))

    async def _authenticate(self, frame: FrameT, user: str, device: str, secret: str) -> None:
        try:
            key = await self._gateway.authenticate(user, device, secret, self._ip)
        except Exception:  # the store failed us: the device will retry; never leave it hanging
            log.exception("device %s/%s: authentication failed with an error", user, device)
            self.close("authentication error")
            return
        if self._closing or self._transport is None:
            return
        if self._gateway.closing:
            self.close("server shutting down")
            return
        if key is None:
            self._transport.write(self.auth_reply(frame, False))
            self._closing = True
            self._transport.close()
            return
        self._admitted_done()
        settings = self._gateway.settings
        self._decoder.max_frame = settings.max_frame_bytes
        if settings.device_frame_rate:
            clock = asyncio.get_running_loop().time
            rate, flood = settings.device_frame_rate, settings.device_flood_seconds
            self._allowance = FrameAllowance(rate, flood, clock)
        session = self._session = self._gateway.open_session(key, self, self._ip)
        session.count_traffic(self._rx_before_auth, 0)
        self.write(self.auth_reply(frame, True))
        self._checking = False
        self._step()  # what arrived meanwhile, then reading resumes
