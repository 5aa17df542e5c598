"""The legacy Thinger protocol (ports 25200/25202): AUTH, keep-alive echo, signal flags."""

from __future__ import annotations

import logging

from roost.bus.base import Operation
from roost.devices.gateway import DeviceGateway
from roost.devices.session import DeviceSession
from roost.endpoints.delivery import device_call
from roost.errors import InvalidInput
from roost.net.batch import WriteBatch
from roost.net.bucket_writes import BucketWrites
from roost.net.connection import DeviceConnection, credentials_triple
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE_BYTES, KeepAlive, Message, Signal
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.net.legacy")

_AUTH_OK = legacy.encode(Message(signal=Signal.REQUEST_OK))
_AUTH_ERROR = legacy.encode(Message(signal=Signal.REQUEST_ERROR))
# Device-initiated messages that wait for an answer we cannot give yet: none left (buckets,
# properties, endpoints and device calls are served); a flag added to the protocol goes here.
_UNSUPPORTED: frozenset[int] = frozenset()
_STREAM_DATA = frozenset({Signal.STREAM_EVENT, Signal.STREAM_SAMPLE})


class LegacyConnection(DeviceConnection[legacy.Frame]):
    __slots__ = ("_bucket_writes",)
    PROTOCOL = "legacy"

    def __init__(self, gateway: DeviceGateway, writes: WriteBatch | None = None) -> None:
        settings = gateway.settings
        decoder = legacy.Decoder(
            max_frame=settings.max_frame_bytes, max_depth=settings.max_pson_depth
        )
        super().__init__(gateway, decoder, writes)
        self._bucket_writes: BucketWrites | None = None  # made at the first

    def credentials(self, frame: legacy.Frame) -> tuple[str, str, str] | None:
        if not isinstance(frame, Message) or frame.signal != Signal.AUTH:
            return None
        return credentials_triple(frame.resource)

    def auth_reply(self, frame: legacy.Frame, accepted: bool) -> bytes:
        return _AUTH_OK if accepted else _AUTH_ERROR

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None:
        signal = Signal.NONE
        if op is Operation.DESCRIBE:
            path = (*path, "api")
        elif op is Operation.START_STREAM:
            signal = Signal.START_STREAM
            payload = payload or None  # an event stream carries no interval
        elif op is Operation.STOP_STREAM:
            signal = Signal.STOP_STREAM
        message = Message(stream_id=stream_id, signal=signal, payload=payload)
        resource = self.resource_field(path, legacy.resource_field)
        self.write(legacy.encode_request(message, resource))

    def answer_call(self, stream_id: int, ok: bool, payload: PsonValue, error: str) -> None:
        """A device-to-device call's answer (roost.devices.peers): flag 1 with the target's
        reply, or flag 2 (the legacy protocol carries no reason)."""
        if ok:
            try:
                self.write(legacy.encode(Message(stream_id, Signal.REQUEST_OK, payload=payload)))
                return
            except InvalidInput as exc:
                log.warning("device call reply on stream %d not encodable: %s", stream_id, exc)
        self.write(legacy.encode(Message(stream_id, Signal.REQUEST_ERROR)))

    def _bucket_write(self, session: DeviceSession, frame: Message) -> None:
        """BUCKET_DATA (flag 10; roost.devices.buckets), with the others of this loop step
        (roost.net.bucket_writes); confirmed when it carries a stream id."""
        writes = self._bucket_writes
        if writes is None:
            writes = self._bucket_writes = BucketWrites(
                self._gateway, session.key, self._answer_bucket_write
            )
        writes.add(frame.identifier, frame.payload, frame.stream_id)

    def _answer_bucket_write(self, stream_id: int, refused: str | None) -> None:
        """Flag 1 once the point is committed, else flag 2 (the legacy protocol carries no
        reason)."""
        signal = Signal.REQUEST_OK if refused is None else Signal.REQUEST_ERROR
        self.write(legacy.encode(Message(stream_id, signal)))

    async def _endpoint_call(self, session: DeviceSession, frame: Message) -> None:
        """CALL_ENDPOINT (flag 8; roost.endpoints): the device's user's endpoint called with the
        payload, confirmed when the message carries a stream id: flag 1 once the target answered
        2xx, else flag 2 (the legacy protocol carries no reason)."""
        refused = await device_call(
            self._gateway.endpoints, session.key, frame.identifier, frame.payload
        )
        if frame.stream_id:
            signal = Signal.REQUEST_OK if refused is None else Signal.REQUEST_ERROR
            self.write(legacy.encode(Message(frame.stream_id, signal)))

    def on_frame(self, session: DeviceSession, frame: legacy.Frame) -> bool:
        if isinstance(frame, KeepAlive):
            self.write(KEEP_ALIVE_BYTES)
            return False
        signal = frame.signal
        if signal == Signal.REQUEST_OK or signal == Signal.REQUEST_ERROR:
            if session.resolve(frame.stream_id, signal == Signal.REQUEST_OK, frame.payload):
                return True
            log.debug("device %s: reply to unknown stream %d", session.key, frame.stream_id)
        elif signal == Signal.GET_PROPERTY or signal == Signal.SET_PROPERTY:
            self._gateway.spawn(self._property(session, frame))
        elif signal == Signal.BUCKET_DATA:
            self._bucket_write(session, frame)
        elif signal == Signal.CALL_ENDPOINT:
            self._gateway.spawn(self._endpoint_call(session, frame))
        elif signal in _STREAM_DATA:
            payload = frame.payload
            value: dict[str, PsonValue] = payload if isinstance(payload, dict) else {"out": payload}
            if not session.stream_data(frame.stream_id, value, signal == Signal.STREAM_EVENT):
                log.debug("device %s: data on unknown stream %d", session.key, frame.stream_id)
        elif signal == Signal.CALL_DEVICE:
            self._gateway.peers.call(
                session.key, self, frame.stream_id, frame.identifier, frame.resource, frame.payload
            )
        elif signal in _UNSUPPORTED:
            log.debug("device %s: unsupported message with flag %d", session.key, signal)
            # The device waits for an answer when it set a stream id.
            if frame.stream_id:
                reply = Message(stream_id=frame.stream_id, signal=Signal.REQUEST_ERROR)
                self.write(legacy.encode(reply))
        else:
            log.debug("device %s: ignored message with flag %d", session.key, signal)
        return False

    async def _property(self, session: DeviceSession, frame: Message) -> None:
        """GET_PROPERTY / SET_PROPERTY (flags 11/12; roost.devices.properties). A GET is always
        answered, with the stream id it came with (0 from the official client): flag 1 and the
        value, or flag 2 (no such property). A SET is answered when it carries a stream id."""
        read = frame.signal == Signal.GET_PROPERTY
        ok, value = await self._gateway.answer_property(
            session.key, read, frame.identifier, frame.payload
        )
        if read or frame.stream_id:
            signal = Signal.REQUEST_OK if ok else Signal.REQUEST_ERROR
            self.write(legacy.encode(Message(frame.stream_id, signal, payload=value)))
