"""WebSocket (RFC 6455), server side, for a byte stream carried in WebSocket messages.

IOTMP-Linux reaches ``/iotmp`` over WebSocket and writes its IOTMP byte stream in TEXT frames
that are usually not valid UTF-8 (protocol.md 3.1), which general WebSocket libraries refuse
(close 1007). Here a data frame's payload is bytes whatever its opcode: TEXT and BINARY differ
only in :attr:`Data.text`, which the server uses to answer in the same kind of frame.

:class:`Decoder` takes what a client sends and yields events. The payload of a data frame is
passed on as it arrives (:class:`Data` chunks, unmasked), not collected into a message: the
stream above has its own framing and limits, so a frame's declared length allocates nothing
here. Control frames (at most 125 bytes by the RFC) are collected whole. Client frames must be
masked; reserved bits (no extension is ever negotiated), unknown opcodes, fragmented or
oversized control frames, and continuation frames out of place are :class:`DecodeError`. After
its first error the decoder refuses further input; after a CLOSE it ignores it.

:func:`handshake` reads the HTTP upgrade request head; :func:`answer` answers it: 101, or an
HTTP error with Roost's JSON error body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from dataclasses import dataclass
from enum import IntEnum

from roost.errors import DecodeError

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = b"13"
MAX_CONTROL_PAYLOAD = 125
MAX_HEAD_BYTES = 16 * 1024  # an upgrade request head, as passed on by the HTTP server


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    POLICY_VIOLATION = 1008


@dataclass(frozen=True, slots=True)
class Data:
    """Payload bytes of a data message, in order; ``text``: the message is a TEXT one."""

    payload: bytes
    text: bool


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int | None  # None: the CLOSE frame had no body
    reason: bytes


Event = Data | Ping | Pong | Close


def unmask(data: bytes, key: bytes, offset: int = 0) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated, ``offset`` bytes into the masked payload."""
    size = len(data)
    if not size:
        return b""
    turn = offset % 4
    key = key[turn:] + key[:turn]
    pattern = (key * (size // 4 + 1))[:size]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(pattern, "little")
    return masked.to_bytes(size, "little")


class Decoder:
    """Incremental: ``feed(bytes) -> [event, ...]`` for the frames a client sends."""

    def __init__(self) -> None:
        self._buf = b""  # an incomplete frame header or control frame (at most 139 bytes)
        self._remaining = 0  # payload bytes of the current data frame still to come
        self._key = b""
        self._offset = 0  # payload bytes of the current data frame already unmasked
        self._message: bool | None = None  # a fragmented data message goes on: its text flag
        self._final = True  # the current data frame ends its message
        self._text = False
        self._failure: str | None = None
        self._closed = False  # a CLOSE came: what follows is ignored (RFC 6455 5.5.1)

    def feed(self, data: bytes) -> list[Event]:
        if self._failure is not None:
            raise DecodeError(f"decoder stopped after an earlier error: {self._failure}")
        if self._closed:
            return []
        buf = self._buf + data if self._buf else data
        events: list[Event] = []
        pos = 0
        try:
            while True:
                if self._remaining:
                    pos = self._payload(buf, pos, events)
                    if self._remaining:
                        break
                if pos >= len(buf):
                    break
                start = self._frame(buf, pos, events)
                if start is None:
                    break
                pos = start
                if self._closed:
                    pos = len(buf)
                    break
        except DecodeError as exc:
            self._failure = exc.message
            self._buf = b""
            raise
        self._buf = buf[pos:]
        return events

    def _payload(self, buf: bytes, pos: int, events: list[Event]) -> int:
        """Pass on what ``buf`` holds of the current data frame's payload."""
        take = min(self._remaining, len(buf) - pos)
        if take:
            chunk = unmask(buf[pos : pos + take], self._key, self._offset)
            self._offset += take
            self._remaining -= take
            last = events[-1] if events else None
            if isinstance(last, Data) and last.text == self._text:  # one chunk per feed
                events[-1] = Data(last.payload + chunk, self._text)
            else:
                events.append(Data(chunk, self._text))
        if not self._remaining:
            self._message = None if self._final else self._text
        return pos + take

    def _frame(self, buf: bytes, pos: int, events: list[Event]) -> int | None:
        """Read the frame header at ``pos`` (and a control frame whole); the position after
        what was consumed, or None when more bytes are needed."""
        end = len(buf)
        if end - pos < 2:
            return None
        first, second = buf[pos], buf[pos + 1]
        final, opcode = bool(first & 0x80), first & 0x0F
        if first & 0x70:
            raise DecodeError("reserved bits set (no extension was negotiated)")
        if not second & 0x80:
            raise DecodeError("client frame not masked")
        size = second & 0x7F
        at = pos + 2
        if size == 126:
            if end - at < 2:
                return None
            (size,) = struct.unpack_from("!H", buf, at)
            at += 2
        elif size == 127:
            if end - at < 8:
                return None
            (size,) = struct.unpack_from("!Q", buf, at)
            if size >> 63:
                raise DecodeError("frame length with its most significant bit set")
            at += 8
        if opcode >= Opcode.CLOSE:
            return self._control(buf, at, final, opcode, size, events)
        if opcode == Opcode.CONTINUATION:
            if self._message is None:
                raise DecodeError("continuation frame outside a fragmented message")
            text = self._message
        elif opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._message is not None:
                raise DecodeError("new data frame inside a fragmented message")
            text = opcode == Opcode.TEXT
        else:
            raise DecodeError(f"unknown opcode {opcode:#x}")
        if end - at < 4:
            return None
        self._key = buf[at : at + 4]
        self._offset = 0
        self._remaining = size
        self._final = final
        self._text = text
        if not size:
            self._message = None if final else text
        return at + 4

    def _control(
        self, buf: bytes, at: int, final: bool, opcode: int, size: int, events: list[Event]
    ) -> int | None:
        if opcode not in (Opcode.CLOSE, Opcode.PING, Opcode.PONG):
            raise DecodeError(f"unknown opcode {opcode:#x}")
        if not final:
            raise DecodeError("fragmented control frame")
        if size > MAX_CONTROL_PAYLOAD:
            raise DecodeError(f"control frame of {size} bytes (at most {MAX_CONTROL_PAYLOAD})")
        if len(buf) - at < 4 + size:
            return None
        payload = unmask(buf[at + 4 : at + 4 + size], buf[at : at + 4])
        if opcode == Opcode.PING:
            events.append(Ping(payload))
        elif opcode == Opcode.PONG:
            events.append(Pong(payload))
        else:
            if len(payload) == 1:
                raise DecodeError("close frame with a 1-byte body")
            code = struct.unpack_from("!H", payload)[0] if payload else None
            events.append(Close(code, payload[2:]))
            self._closed = True
        return at + 4 + size


def encode_frame(opcode: int, payload: bytes = b"", mask: bytes | None = None) -> bytes:
    """One final frame: unmasked as a server sends it, or masked with ``mask`` (4 bytes) as a
    client does."""
    size = len(payload)
    masked = 0x80 if mask is not None else 0
    if size < 126:
        head = bytes((0x80 | opcode, masked | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, masked | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, masked | 127, size)
    if mask is None:
        return head + payload
    return head + mask + unmask(payload, mask)


def encode_close(code: int | None, reason: str = "", mask: bytes | None = None) -> bytes:
    """A CLOSE frame; ``code`` None: with no body (answering a CLOSE that had none)."""
    if code is None:
        return encode_frame(Opcode.CLOSE, b"", mask)
    body = struct.pack("!H", code) + reason.encode()[: MAX_CONTROL_PAYLOAD - 2]
    return encode_frame(Opcode.CLOSE, body, mask)


@dataclass(frozen=True, slots=True)
class Handshake:
    """An upgrade request: its method, path (without the query) and header lines."""

    method: bytes
    path: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case, values stripped

    def header(self, name: bytes) -> bytes | None:
        """The last value of a header, None if absent."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found

    def tokens(self, name: bytes) -> list[bytes]:
        """The comma-separated values of a header, over all its lines."""
        return [
            token.strip()
            for key, value in self.headers
            if key == name
            for token in value.split(b",")
            if token.strip()
        ]


def handshake(head: bytes) -> Handshake:
    """Parse an HTTP/1.1 request head (request line, header lines, blank line)."""
    if len(head) > MAX_HEAD_BYTES:
        raise DecodeError(f"request head over {MAX_HEAD_BYTES} bytes")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise DecodeError("malformed request line")
    method, target, _ = parts
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise DecodeError("malformed header line")
        headers.append((name.lower(), value.strip()))
    return Handshake(method, target.partition(b"?")[0], headers)


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value answering ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back to an upgrade request: the 101 (``accepted``), or an HTTP error after
    which the connection closes (``reason`` says why)."""

    accepted: bool
    data: bytes
    reason: str = ""


_REASONS = {400: b"Bad Request", 426: b"Upgrade Required"}


def refusal(status: int, reason: str, extra: bytes = b"") -> Answer:
    """An HTTP error answer with the JSON error body; ``extra``: header lines, each with CRLF."""
    body = json.dumps({"error": {"message": reason}}).encode()
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
    )
    return Answer(False, head + extra + b"connection: close\r\n\r\n" + body, reason)


def answer(request: Handshake, subprotocol: bytes | None) -> Answer:
    """The answer to ``request``: 101, choosing ``subprotocol`` if the client offers it, or a
    refusal if the request is not a valid WebSocket opening handshake."""
    if request.method != b"GET":
        return refusal(400, "a WebSocket opens with GET")
    if b"websocket" not in (token.lower() for token in request.tokens(b"upgrade")):
        return refusal(400, "not a WebSocket upgrade")
    if request.header(b"sec-websocket-version") != VERSION:
        return refusal(426, "WebSocket version 13 only", b"sec-websocket-version: 13\r\n")
    key = request.header(b"sec-websocket-key") or b""
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid = False
    if not valid:
        return refusal(400, "missing or malformed Sec-WebSocket-Key")
    lines = [
        b"HTTP/1.1 101 Switching Protocols",
        b"upgrade: websocket",
        b"connection: Upgrade",
        b"sec-websocket-accept: " + accept_key(key),
    ]
    if subprotocol is not None and subprotocol in request.tokens(b"sec-websocket-protocol"):
        lines.append(b"sec-websocket-protocol: " + subprotocol)
    return Answer(True, b"\r\n".join(lines) + b"\r\n\r\n")
