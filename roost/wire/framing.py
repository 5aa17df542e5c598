"""Frame splitting shared by the legacy and IOTMP decoders (protocol.md 2.2 and 3.2), and the
header patching shared by their encoders.

Both protocols frame a message as ``varint type`` + ``varint body size`` + body.
:class:`FrameBuffer` buffers received bytes, checks each header as soon as it is complete (known
type, empty body where the type requires one, size within ``max_frame``: all before waiting for
the body), and hands every complete body to the protocol's ``decode_frame``. After its first
:class:`~roost.errors.DecodeError` it refuses further input (the connection is to be closed);
frames completed earlier in the same ``feed`` call as the error are discarded.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Generic, TypeVar

from roost.errors import DecodeError
from roost.wire.pson import Buffer, encode_varint

HEADER_VARINT_MAX_BYTES = 5
DEFAULT_MAX_FRAME = 65536

FrameT = TypeVar("FrameT")
# (frame type, buffer, body start, body end) -> the decoded frame
DecodeFrame = Callable[[int, bytearray, int, int], FrameT]


def finish_frame(out: bytearray) -> bytes:
    """The frame built in ``out`` behind a placeholder 2-byte header (type, then a 0 for the
    size), with its body size filled in."""
    size = len(out) - 2
    if size < 0x80:
        out[1] = size
    else:
        header = bytearray()
        encode_varint(size, header)
        out[1:2] = header
    return bytes(out)


def header_varint(buf: Buffer, pos: int, end: int) -> tuple[int, int] | None:
    """A frame-header varint at ``pos`` and the position after it, or None when more bytes are
    needed; DecodeError when longer than :data:`HEADER_VARINT_MAX_BYTES`."""
    if pos < end and buf[pos] < 0x80:  # the usual one-byte type or size
        return buf[pos], pos + 1
    result = 0
    shift = 0
    for _ in range(HEADER_VARINT_MAX_BYTES):
        if pos >= end:
            return None
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise DecodeError(f"frame header varint longer than {HEADER_VARINT_MAX_BYTES} bytes")


class FrameBuffer(Generic[FrameT]):
    """Incremental splitter: ``feed(bytes) -> [decoded frame, ...]``."""

    def __init__(
        self,
        decode_frame: DecodeFrame[FrameT],
        *,
        types: Container[int],
        empty_types: Container[int] = (),
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self._decode_frame = decode_frame
        self._types = types
        self._empty_types = empty_types
        self.max_frame = max_frame  # largest body accepted; may change between feeds
        self._buf = bytearray()
        self._failure: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: Buffer) -> list[FrameT]:
        """Add received bytes; return the frames they complete, in order."""
        if self._failure is not None:
            raise DecodeError(f"decoder stopped after an earlier error: {self._failure}")
        buf = self._buf
        buf += data
        frames: list[FrameT] = []
        pos = 0
        end = len(buf)
        decode_frame = self._decode_frame
        try:
            while pos < end:
                header = self._header(buf, pos, end)
                if header is None:
                    break
                kind, body_start, body_end = header
                if body_end > end:
                    break
                frames.append(decode_frame(kind, buf, body_start, body_end))
                pos = body_end
        except DecodeError as exc:
            self._failure = exc.message
            buf.clear()
            raise
        del buf[:pos]  # O(1) in CPython when deleting from the front
        return frames

    def _header(self, buf: bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
        """(type, body start, body end) of the frame at ``pos``, None if the header is partial."""
        kind = header_varint(buf, pos, end)
        if kind is None:
            return None
        frame_type, pos = kind
        if frame_type not in self._types:
            raise DecodeError(f"unknown frame type {frame_type}")
        size = header_varint(buf, pos, end)
        if size is None:
            return None
        body_size, pos = size
        if body_size and frame_type in self._empty_types:
            raise DecodeError(f"frame of type {frame_type} with a {body_size}-byte body")
        if body_size > self.max_frame:
            raise DecodeError(f"frame body of {body_size} bytes exceeds {self.max_frame}")
        return frame_type, pos, pos + body_size
