"""IOTMP: framing and message bodies (protocol.md 3.2, 3.3, 3.5-3.9).

A frame is ``varint type`` + ``varint body size`` + body, the type one of :class:`MessageType`.
KEEP_ALIVE always has an empty body (``05 00``).

A body is a run of fields, each ``varint key`` (``field << 3 | wire``) and a value: 1 STREAM_ID,
2 PARAMETERS, 3 PAYLOAD, 4 RESOURCE. Wire 0 is a varint, wire 1 a PSON v1 value (older clients),
wire 2 a PSON v2 value (current clients). The encoder writes the fields in the order 1, 2, 3, 4,
leaves out a zero stream id and ``None`` values, and, as the official client does, sends a field
whose value is a non-negative integer as a varint (a bucket write's RESOURCE 5 is ``20 05``) and
anything else as PSON v2. The official client emits fields in hash-map order, so the decoder takes
them in any order, accepts all three wire types for every field except the stream id (a varint
only), skips unknown fields of those wire types, and lets a repeated field's last value win.
Known limitation: a PSON ``null`` field decodes to ``None`` and reads the same as an absent one.

:class:`Decoder` is incremental and sans-IO, like :class:`roost.wire.legacy.Decoder`: the declared
body size is checked against ``max_frame`` before the body is awaited, and the decoder refuses
further input after its first :class:`~roost.errors.DecodeError`.
"""

from __future__ import annotations

from enum import IntEnum
from functools import partial
from typing import NamedTuple

from roost.errors import DecodeError, InvalidInput
from roost.wire import pson, pson2
from roost.wire.framing import (
    DEFAULT_MAX_FRAME,
    HEADER_VARINT_MAX_BYTES,
    FrameBuffer,
    finish_frame,
)
from roost.wire.pson import MAX_UINT64, Buffer, PsonValue, decode_varint, encode_varint


class MessageType(IntEnum):
    """The frame type, which says what a message means."""

    OK = 1
    ERROR = 2
    CONNECT = 3
    DISCONNECT = 4
    KEEP_ALIVE = 5
    RUN = 6
    DESCRIBE = 7
    START_STREAM = 8
    STOP_STREAM = 9
    STREAM_DATA = 10


class Service(IntEnum):
    """Server-side services a device addresses with a numeric RESOURCE (protocol.md 3.8)."""

    READ_DEVICE_PROPERTY = 1
    SET_DEVICE_PROPERTY = 2
    CALL_DEVICE = 3
    CALL_ENDPOINT = 4
    WRITE_BUCKET = 5
    LOCK_SYNC = 6
    UNLOCK_SYNC = 7
    SUBSCRIBE_EVENT = 8


class Message(NamedTuple):
    """One IOTMP frame. ``type`` is a :class:`MessageType` (decoded frames always carry the enum
    member); ``None`` fields are absent on the wire, as is a zero stream id."""

    type: int
    stream_id: int = 0
    parameters: PsonValue = None
    payload: PsonValue = None
    resource: PsonValue = None


KEEP_ALIVE = Message(MessageType.KEEP_ALIVE)
KEEP_ALIVE_BYTES = b"\x05\x00"

# Field numbers and wire types.
FIELD_STREAM_ID = 1
FIELD_PARAMETERS = 2
FIELD_PAYLOAD = 3
FIELD_RESOURCE = 4
WIRE_VARINT = 0
WIRE_PSON1 = 1
WIRE_PSON2 = 2

_TYPES: dict[int, MessageType] = {int(t): t for t in MessageType}


# -- encoder -------------------------------------------------------------------------------------


def encode(msg: Message) -> bytes:
    """Encode a message (header + body); raises InvalidInput for what cannot be encoded."""
    if not isinstance(msg, Message):
        raise InvalidInput(f"cannot encode a {type(msg).__name__} as an IOTMP frame")
    kind = msg.type
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in _TYPES:
        raise InvalidInput(f"unknown IOTMP message type {kind!r}")
    if kind == MessageType.KEEP_ALIVE and msg != KEEP_ALIVE:
        raise InvalidInput("a KEEP_ALIVE carries no fields")
    return _encode(msg, None)


def encode_request(msg: Message, resource: bytes) -> bytes:
    """``encode(msg)`` with its resource already encoded by :func:`resource_field`: the server asks
    a device for the same few resources again and again, and its connection keeps their fields."""
    return _encode(msg, resource)


def resource_field(path: tuple[str, ...]) -> bytes:
    """The RESOURCE field of a message naming ``path`` (``"a/b"``)."""
    out = bytearray()
    _encode_field(FIELD_RESOURCE, "/".join(path), out)
    return bytes(out)


def _encode(msg: Message, resource: bytes | None) -> bytes:
    out = bytearray((msg.type, 0))  # body size patched by finish_frame
    if msg.stream_id:
        out.append(FIELD_STREAM_ID << 3 | WIRE_VARINT)
        encode_varint(msg.stream_id, out)
    _encode_field(FIELD_PARAMETERS, msg.parameters, out)
    _encode_field(FIELD_PAYLOAD, msg.payload, out)
    if resource is not None:
        out += resource
    else:
        _encode_field(FIELD_RESOURCE, msg.resource, out)
    return finish_frame(out)


def _encode_field(field: int, value: PsonValue, out: bytearray) -> None:
    if value is None:
        return
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UINT64:
        out.append(field << 3 | WIRE_VARINT)
        encode_varint(value, out)
    else:
        out.append(field << 3 | WIRE_PSON2)
        pson2.encode_into(value, out)


# -- decoder -------------------------------------------------------------------------------------


def decode_message(
    kind: int,
    buf: Buffer,
    pos: int = 0,
    end: int | None = None,
    max_depth: int = pson.DEFAULT_MAX_DEPTH,
) -> Message:
    """Decode the body of a message of type ``kind`` that spans exactly ``buf[pos:end]``."""
    message_type = _TYPES.get(kind)
    if message_type is None:
        raise DecodeError(f"unknown IOTMP message type {kind}")
    end = len(buf) if end is None else min(end, len(buf))
    if message_type is MessageType.KEEP_ALIVE and pos < end:
        raise DecodeError(f"KEEP_ALIVE with a {end - pos}-byte body")
    stream_id = 0
    parameters: PsonValue = None
    payload: PsonValue = None
    resource: PsonValue = None
    while pos < end:
        tag, pos = decode_varint(buf, pos, end, HEADER_VARINT_MAX_BYTES)
        field = tag >> 3
        wire = tag & 7
        if field == FIELD_STREAM_ID:
            if wire != WIRE_VARINT:
                raise DecodeError("the stream id must be a varint")
            stream_id, pos = decode_varint(buf, pos, end)
            continue
        value: PsonValue
        if wire == WIRE_PSON2:
            value, pos = pson2.decode_at(buf, pos, end, max_depth)
        elif wire == WIRE_VARINT:
            value, pos = decode_varint(buf, pos, end)
        elif wire == WIRE_PSON1:
            value, pos = pson.decode_at(buf, pos, end, max_depth)
        else:
            raise DecodeError(f"field {field} has unsupported wire type {wire}")
        if field == FIELD_PAYLOAD:
            payload = value
        elif field == FIELD_RESOURCE:
            resource = value
        elif field == FIELD_PARAMETERS:
            parameters = value
    return Message(message_type, stream_id, parameters, payload, resource)


def _decode_frame(max_depth: int, kind: int, buf: bytearray, start: int, end: int) -> Message:
    return decode_message(kind, buf, start, end, max_depth)


class Decoder(FrameBuffer[Message]):
    """Incremental frame decoder: ``feed(bytes) -> [Message, ...]`` (see FrameBuffer)."""

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = pson.DEFAULT_MAX_DEPTH
    ) -> None:
        super().__init__(
            partial(_decode_frame, max_depth),
            types=_TYPES,
            empty_types=(MessageType.KEEP_ALIVE,),
            max_frame=max_frame,
        )
