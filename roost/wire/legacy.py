"""Legacy Thinger protocol: framing and message bodies (protocol.md 2.2 and 2.4).

A frame is ``varint type`` + ``varint body size`` + body. Type 1 carries a :class:`Message`,
type 2 is the keep-alive and always has an empty body (``02 00``).

A message body is a run of protobuf-like fields: 1 stream id and 2 signal flag (varints), 3
identifier, 4 resource and 6 payload (wire type 6: one PSON value, self-delimiting). The encoder
writes them in the order 1, 2, 3, 4, 6 and leaves out zero ids/flags and ``None`` values, as the
official client does. Known limitation: a PSON ``null`` identifier/resource/payload decodes to
``None`` and so reads the same as an absent field.

:class:`Decoder` is incremental and sans-IO: feed it whatever bytes arrived, get back every frame
they complete. It checks the declared body size against ``max_frame`` before waiting for the body,
and after its first :class:`~roost.errors.DecodeError` it refuses further input (the connection is
to be closed). Frames completed earlier in the same ``feed`` call as the error are discarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import partial
from typing import NamedTuple, TypeAlias

from roost.errors import DecodeError, InvalidInput
from roost.wire import pson
from roost.wire.framing import (
    DEFAULT_MAX_FRAME,
    HEADER_VARINT_MAX_BYTES,
    FrameBuffer,
    finish_frame,
)
from roost.wire.pson import Buffer, PsonValue, decode_varint, encode_varint


class Signal(IntEnum):
    """The signal flag (field 2) that says what a message means."""

    NONE = 0
    REQUEST_OK = 1
    REQUEST_ERROR = 2
    START_STREAM = 3
    STOP_STREAM = 4
    AUTH = 5
    STREAM_EVENT = 6
    STREAM_SAMPLE = 7
    CALL_ENDPOINT = 8
    CALL_DEVICE = 9
    BUCKET_DATA = 10
    GET_PROPERTY = 11
    SET_PROPERTY = 12


class Message(NamedTuple):
    """One type-1 frame. ``signal`` is a :class:`Signal` when known, else the plain number.
    (A NamedTuple: immutable, and cheap to build on the hot path.)"""

    stream_id: int = 0
    signal: int = 0
    identifier: PsonValue = None
    resource: PsonValue = None
    payload: PsonValue = None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """The keep-alive frame ``02 00`` (all instances are equal)."""


KEEP_ALIVE = KeepAlive()
KEEP_ALIVE_BYTES = b"\x02\x00"
Frame: TypeAlias = Message | KeepAlive

MESSAGE_TYPE = 1
KEEP_ALIVE_TYPE = 2

# Field tags, (field << 3) | wire.
TAG_STREAM_ID = 0x08
TAG_SIGNAL = 0x10
TAG_IDENTIFIER = 0x1E
TAG_RESOURCE = 0x26
TAG_PAYLOAD = 0x36

_WIRE_VARINT = 0
_WIRE_FIXED64 = 1
_WIRE_LENGTH = 2
_WIRE_FIXED32 = 5
_WIRE_PSON = 6

_SIGNALS: dict[int, Signal] = {int(s): s for s in Signal}


# -- encoder -------------------------------------------------------------------------------------


def encode(frame: Frame) -> bytes:
    """Encode a frame (header + body); raises InvalidInput for values that cannot be encoded."""
    if isinstance(frame, KeepAlive):
        return KEEP_ALIVE_BYTES
    if not isinstance(frame, Message):
        raise InvalidInput(f"cannot encode a {type(frame).__name__} as a legacy frame")
    out = bytearray(b"\x01\x00")  # type 1, body size patched by finish_frame
    _encode_body(frame, out)
    return finish_frame(out)


def encode_request(msg: Message, resource: bytes) -> bytes:
    """``encode(msg)`` with its resource already encoded by :func:`resource_field`: the server asks
    a device for the same few resources again and again, and its connection keeps their fields."""
    out = bytearray(b"\x01\x00")
    _encode_body(msg, out, resource)
    return finish_frame(out)


def resource_field(path: tuple[str, ...]) -> bytes:
    """The RESOURCE field of a message naming ``path`` (a list of its segments)."""
    out = bytearray((TAG_RESOURCE,))
    pson.encode_into(list(path), out)
    return bytes(out)


def _encode_body(msg: Message, out: bytearray, resource: bytes | None = None) -> None:
    if msg.stream_id:
        out.append(TAG_STREAM_ID)
        encode_varint(msg.stream_id, out)
    if msg.signal:
        out.append(TAG_SIGNAL)
        encode_varint(msg.signal, out)
    if msg.identifier is not None:
        out.append(TAG_IDENTIFIER)
        pson.encode_into(msg.identifier, out)
    if resource is not None:
        out += resource
    elif msg.resource is not None:
        out.append(TAG_RESOURCE)
        pson.encode_into(msg.resource, out)
    if msg.payload is not None:
        out.append(TAG_PAYLOAD)
        pson.encode_into(msg.payload, out)


# -- decoder -------------------------------------------------------------------------------------


def decode_message(
    buf: Buffer, pos: int = 0, end: int | None = None, max_depth: int = pson.DEFAULT_MAX_DEPTH
) -> Message:
    """Decode one message body that spans exactly ``buf[pos:end]``."""
    end = len(buf) if end is None else min(end, len(buf))
    stream_id = 0
    signal = 0
    identifier: PsonValue = None
    resource: PsonValue = None
    payload: PsonValue = None
    while pos < end:
        tag, pos = decode_varint(buf, pos, end, HEADER_VARINT_MAX_BYTES)
        field = tag >> 3
        wire = tag & 7
        if wire == _WIRE_PSON:
            value, pos = pson.decode_at(buf, pos, end, max_depth)
            if field == 6:
                payload = value
            elif field == 4:
                resource = value
            elif field == 3:
                identifier = value
            elif field in (1, 2):
                raise DecodeError(f"field {field} must be a varint, not a PSON value")
        elif wire == _WIRE_VARINT:
            number, pos = decode_varint(buf, pos, end)
            if field == 1:
                stream_id = number
            elif field == 2:
                signal = _SIGNALS.get(number, number)
            elif field in (3, 4, 6):
                raise DecodeError(f"field {field} must be a PSON value, not a varint")
        elif field in (1, 2, 3, 4, 6):
            raise DecodeError(f"field {field} has wire type {wire}")
        else:
            pos = _skip(buf, pos, end, wire)
    return Message(stream_id, signal, identifier, resource, payload)


def _skip(buf: Buffer, pos: int, end: int, wire: int) -> int:
    """Skip the value of an unknown field (non-PSON wire types)."""
    if wire == _WIRE_FIXED64:
        size = 8
    elif wire == _WIRE_FIXED32:
        size = 4
    elif wire == _WIRE_LENGTH:
        size, pos = decode_varint(buf, pos, end)
    else:
        raise DecodeError(f"unsupported wire type {wire}")
    if size > end - pos:
        raise DecodeError("field runs past the end of the message")
    return pos + size


class Decoder(FrameBuffer[Frame]):
    """Incremental frame decoder: ``feed(bytes) -> [Frame, ...]`` (see FrameBuffer)."""

    def __init__(
        self, max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = pson.DEFAULT_MAX_DEPTH
    ) -> None:
        super().__init__(
            partial(_decode_frame, max_depth),
            types=(MESSAGE_TYPE, KEEP_ALIVE_TYPE),
            empty_types=(KEEP_ALIVE_TYPE,),
            max_frame=max_frame,
        )


def _decode_frame(max_depth: int, kind: int, buf: bytearray, start: int, end: int) -> Frame:
    if kind == MESSAGE_TYPE:
        return decode_message(buf, start, end, max_depth)
    return KEEP_ALIVE
