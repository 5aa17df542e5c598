"""IOTMP (ports 25204/25206): CONNECT, keep-alive echo, message types instead of flags.

The REST layer does not know this module exists: an IOTMP device's session answers the same
operations as a legacy one. Differences handled here: resource paths travel as "a/b" strings,
outputs answer raw values (stream data is wrapped as ``{"out": value}`` for watchers), the listing
comes from DESCRIBE without a resource, and device-to-server service calls arrive as RUN with a
numeric service id in RESOURCE (IOTMP-Linux) or in PARAMETERS (IOTMP-Embedded/Arduino).
"""

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
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType, Service
from roost.wire.pson import PsonValue

log = logging.getLogger("roost.net.iotmp")

_REQUEST_TYPES = {
    Operation.CALL: MessageType.RUN,
    Operation.DESCRIBE: MessageType.DESCRIBE,
    Operation.START_STREAM: MessageType.START_STREAM,
    Operation.STOP_STREAM: MessageType.STOP_STREAM,
}
_PROPERTY_SERVICES: dict[int, bool] = {
    iotmp.Service.READ_DEVICE_PROPERTY: True,
    iotmp.Service.SET_DEVICE_PROPERTY: False,
}
_REFUSED: dict[bool, PsonValue] = {
    True: {"error": "no such property, or an invalid property id"},
    False: {"error": "property refused: invalid id or value, or no room left"},
}


class IotmpConnection(DeviceConnection[Message]):
    __slots__ = ("_bucket_writes",)
    PROTOCOL = "iotmp"

    def __init__(self, gateway: DeviceGateway, writes: WriteBatch | None = None) -> None:
        settings = gateway.settings
        decoder = iotmp.Decoder(
            max_frame=settings.max_frame_bytes, max_depth=settings.max_pson_depth
        )
        super().__init__(gateway, decoder, writes)
        self._bucket_writes: BucketWrites | None = None  # made at the first

    def credentials(self, frame: Message) -> tuple[str, str, str] | None:
        if frame.type != MessageType.CONNECT:
            return None
        return credentials_triple(frame.payload)

    def auth_reply(self, frame: Message, accepted: bool) -> bytes:
        kind = MessageType.OK if accepted else MessageType.ERROR
        return iotmp.encode(Message(kind, stream_id=frame.stream_id))

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None:
        parameters: PsonValue = None
        if op is Operation.START_STREAM:
            parameters, payload = ({"interval": payload} if payload else None), None
        message = Message(_REQUEST_TYPES[op], stream_id, parameters, payload)
        if op is Operation.STOP_STREAM or not path:
            # no resource: the device finds a stream by its id; DESCRIBE of () is the listing
            self.write(iotmp.encode(message))
            return
        resource = self.resource_field(path, iotmp.resource_field)
        self.write(iotmp.encode_request(message, resource))

    def answer_call(self, stream_id: int, ok: bool, payload: PsonValue, error: str) -> None:
        """A device-to-device call's answer (roost.devices.peers): OK with the target's reply,
        or ERROR with ``{"error": reason}``."""
        if ok:
            try:
                self.write(iotmp.encode(Message(MessageType.OK, stream_id, payload=payload)))
                return
            except InvalidInput as exc:
                log.warning("device call reply on stream %d not encodable: %s", stream_id, exc)
                error = "the reply cannot be encoded"
        self.write(iotmp.encode(Message(MessageType.ERROR, stream_id, payload={"error": error})))

    def _call_device(self, session: DeviceSession, frame: Message) -> None:
        # [device, resource] in the field that does not hold the service id
        target = frame.parameters if type(frame.resource) is int else frame.resource
        device, resource = target if isinstance(target, list) and len(target) == 2 else (None, None)
        self._gateway.peers.call(
            session.key, self, frame.stream_id, device, resource, frame.payload
        )

    def _bucket_write(self, session: DeviceSession, frame: Message) -> None:
        """WRITE_BUCKET (service 5; roost.devices.buckets), with the others of this loop step
        (roost.net.bucket_writes); confirmed when the RUN carries a stream id."""
        writes = self._bucket_writes
        if writes is None:
            writes = self._bucket_writes = BucketWrites(
                self._gateway, session.key, self._answer_bucket_write
            )
        bucket = frame.parameters if type(frame.resource) is int else frame.resource
        writes.add(bucket, frame.payload, frame.stream_id)

    def _answer_bucket_write(self, stream_id: int, refused: str | None) -> None:
        """OK once the point is committed, else ERROR with ``{"error": reason}``."""
        if refused is None:
            reply = Message(MessageType.OK, stream_id)
        else:
            reply = Message(MessageType.ERROR, stream_id, payload={"error": refused})
        self.write(iotmp.encode(reply))

    async def _endpoint_call(self, session: DeviceSession, frame: Message) -> None:
        """CALL_ENDPOINT (service 4; roost.endpoints), confirmed when the RUN carries a stream
        id: OK once the target answered 2xx, else ERROR with ``{"error": reason}``."""
        endpoint = frame.parameters if type(frame.resource) is int else frame.resource
        refused = await device_call(self._gateway.endpoints, session.key, endpoint, frame.payload)
        if frame.stream_id:
            if refused is None:
                reply = Message(MessageType.OK, frame.stream_id)
            else:
                reply = Message(MessageType.ERROR, frame.stream_id, payload={"error": refused})
            self.write(iotmp.encode(reply))

    def on_frame(self, session: DeviceSession, frame: Message) -> bool:
        kind = frame.type
        if kind == MessageType.KEEP_ALIVE:
            self.write(KEEP_ALIVE_BYTES)
        elif kind == MessageType.OK or kind == MessageType.ERROR:
            if session.resolve(frame.stream_id, kind == MessageType.OK, frame.payload):
                return True
            log.debug("device %s: reply to unknown stream %d", session.key, frame.stream_id)
        elif kind == MessageType.STREAM_DATA:
            if not session.stream_data(frame.stream_id, {"out": frame.payload}, False):
                log.debug("device %s: data on unknown stream %d", session.key, frame.stream_id)
        elif kind == MessageType.RUN and (read := _property_service(frame)) is not None:
            self._gateway.spawn(self._property(session, frame, read))
        elif kind == MessageType.RUN and _writes_bucket(frame):
            self._bucket_write(session, frame)
        elif kind == MessageType.RUN and _is_service(frame, Service.CALL_ENDPOINT):
            self._gateway.spawn(self._endpoint_call(session, frame))
        elif kind == MessageType.DISCONNECT:
            self.close("device said goodbye")
        elif kind == MessageType.RUN and _is_service(frame, Service.CALL_DEVICE):
            self._call_device(session, frame)
        else:
            # RUN of a server service (buckets, properties, endpoints...), event subscriptions,
            # or requests we do not serve: refuse those that wait for an answer.
            log.debug("device %s: unsupported message of type %d", session.key, kind)
            if frame.stream_id:
                self.write(iotmp.encode(Message(MessageType.ERROR, stream_id=frame.stream_id)))
        return False

    async def _property(self, session: DeviceSession, frame: Message, read: bool) -> None:
        """READ_DEVICE_PROPERTY / SET_DEVICE_PROPERTY (services 1/2; roost.devices.properties),
        answered when the RUN carries a stream id: OK with the value read, or ERROR."""
        prop = frame.parameters if type(frame.resource) is int else frame.resource
        ok, value = await self._gateway.answer_property(session.key, read, prop, frame.payload)
        if frame.stream_id:
            if ok:
                reply = Message(MessageType.OK, frame.stream_id, payload=value)
            else:
                reply = Message(MessageType.ERROR, frame.stream_id, payload=_REFUSED[read])
            self.write(iotmp.encode(reply))


def _is_service(frame: Message, service: Service) -> bool:
    """Whether a RUN calls the server's ``service``, whichever field holds the service id:
    RESOURCE (IOTMP-Linux) or PARAMETERS (IOTMP-Embedded/Arduino)."""
    resource, parameters = frame.resource, frame.parameters
    return (type(resource) is int and resource == service) or (
        type(parameters) is int and parameters == service
    )


def _property_service(frame: Message) -> bool | None:
    """True for a RUN of READ_DEVICE_PROPERTY, False for SET_DEVICE_PROPERTY, else None; the
    service id is in RESOURCE (IOTMP-Linux) or in PARAMETERS (IOTMP-Embedded/Arduino)."""
    service = frame.resource if type(frame.resource) is int else frame.parameters
    if not isinstance(service, int) or isinstance(service, bool):
        return None
    return _PROPERTY_SERVICES.get(service)


def _writes_bucket(frame: Message) -> bool:
    """Whether a RUN is WRITE_BUCKET, its service id in RESOURCE (IOTMP-Linux) or in PARAMETERS
    (IOTMP-Embedded/Arduino)."""
    service = frame.resource if type(frame.resource) is int else frame.parameters
    return type(service) is int and service == iotmp.Service.WRITE_BUCKET
