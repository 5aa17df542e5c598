"""PSON v2: the value encoding of IOTMP (protocol.md 3.4).

Every value starts with one tag byte: the high 3 bits are the type, the low 5 bits an inline
number; an inline number of 31 means the real number follows as a varint. The number is the value
itself for integers, the byte length for strings and bytes, and the ELEMENT COUNT (not a byte
length) for maps and arrays. Floats carry a selector (0 = float32, 1 = float64) followed by 4 or 8
little-endian bytes; discrete values are false (0), true (1) and null (2).

The encoder makes the choices of the official IOTMP-Linux client: an integral float goes out as
an integer, any other float as a float32 when that represents it exactly, else as a float64.

The decoder shares the value model of :mod:`roost.wire.pson` and its strictness: every length is
checked against the bytes left before slicing, a declared element count that the remaining bytes
could not hold (each element takes at least one byte, a map pair two) is refused before anything
is built, map keys must be PSON strings, nesting is limited, and nothing but
:class:`~roost.errors.DecodeError` is raised. A float32 decodes to the shortest decimal that maps
back to the same float32 (as in v1), so ``40.4168`` sent as a float32 reads back as ``40.4168``;
re-encoded, such a value goes out as a float64 (it is not exactly a float32), which is stable
from then on.
"""

from __future__ import annotations

from roost.errors import DecodeError, InvalidInput
from roost.wire.pson import (
    DEFAULT_MAX_DEPTH,
    ENCODE_MAX_DEPTH,
    F32,
    F64,
    MAX_UINT64,
    Buffer,
    PsonInput,
    PsonValue,
    decode_varint,
    decode_whole,
    encode_varint,
    shortest_float32,
    utf8,
)

__all__ = ["PsonInput", "PsonValue", "decode", "decode_at", "encode", "encode_into"]

# Type ids, already shifted into the high 3 bits of the tag byte.
UNSIGNED = 0x00
NEGATIVE = 0x20
FLOATING = 0x40
DISCRETE = 0x60
STRING = 0x80
BYTES = 0xA0
MAP = 0xC0
ARRAY = 0xE0

TYPE_MASK = 0xE0
INLINE_MASK = 0x1F
EXTENDED = 0x1F  # inline number 31: the number follows as a varint

# Complete tag bytes of the fixed-size values.
FLOAT32 = 0x40
FLOAT64 = 0x41
FALSE = 0x60
TRUE = 0x61
NULL = 0x62


# -- encoder -------------------------------------------------------------------------------------


def encode(value: PsonInput) -> bytes:
    """Encode one value; raises InvalidInput for anything PSON v2 cannot carry."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def encode_into(value: PsonInput, out: bytearray) -> None:
    """Append the encoding of ``value`` to ``out``; on InvalidInput ``out`` is left unchanged."""
    mark = len(out)
    try:
        _encode(value, out, 0)
    except InvalidInput:
        del out[mark:]
        raise


def _header(kind: int, n: int, out: bytearray) -> None:
    """A tag of type ``kind`` with number ``n``: inline below 31, else 31 and a varint."""
    if n < EXTENDED:
        out.append(kind | n)
    else:
        out.append(kind | EXTENDED)
        encode_varint(n, out)


def _encode(value: object, out: bytearray, depth: int) -> None:
    if isinstance(value, str):
        data = utf8(value)
        _header(STRING, len(data), out)
        out += data
    elif isinstance(value, bool):
        out.append(TRUE if value else FALSE)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, float):
        _encode_float(value, out)
    elif isinstance(value, dict):
        _encode_map(value, out, depth)
    elif value is None:
        out.append(NULL)
    elif isinstance(value, list | tuple):
        if depth >= ENCODE_MAX_DEPTH:
            raise InvalidInput(f"value nested deeper than {ENCODE_MAX_DEPTH} levels")
        _header(ARRAY, len(value), out)
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        _header(BYTES, len(data), out)
        out += data
    else:
        raise InvalidInput(f"PSON cannot encode a value of type {type(value).__name__}")


def _encode_int(n: int, out: bytearray) -> None:
    if n >= 0:
        if n > MAX_UINT64:
            raise InvalidInput(f"integer {n} is above 2**64-1")
        _header(UNSIGNED, n, out)
    else:
        if n < -MAX_UINT64:
            raise InvalidInput(f"integer {n} is below -(2**64-1)")
        _header(NEGATIVE, -n, out)


def _encode_float(d: float, out: bytearray) -> None:
    if d.is_integer() and -MAX_UINT64 <= d <= MAX_UINT64:
        _encode_int(int(d), out)
        return
    try:
        packed = F32.pack(d)
    except OverflowError:  # finite but beyond float32's range
        packed = b""
    if packed and F32.unpack(packed)[0] == d:  # exact (NaN never compares equal: float64)
        out.append(FLOAT32)
        out += packed
    else:
        out.append(FLOAT64)
        out += F64.pack(d)


def _encode_map(obj: dict[object, object], out: bytearray, depth: int) -> None:
    if depth >= ENCODE_MAX_DEPTH:
        raise InvalidInput(f"value nested deeper than {ENCODE_MAX_DEPTH} levels")
    _header(MAP, len(obj), out)
    for key, item in obj.items():
        if not isinstance(key, str):
            raise InvalidInput(f"PSON map keys must be str, not {type(key).__name__}")
        data = utf8(key)
        _header(STRING, len(data), out)
        out += data
        _encode(item, out, depth + 1)


# -- decoder -------------------------------------------------------------------------------------


def decode(data: Buffer, *, max_depth: int = DEFAULT_MAX_DEPTH) -> PsonValue:
    """Decode exactly one value that spans all of ``data``.

    ``max_depth`` is the number of nested maps/arrays allowed (1 allows ``[1, 2]`` but not
    ``[[1]]``).
    """
    return decode_whole(decode_at, data, max_depth)


def decode_at(
    buf: Buffer, pos: int, end: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[PsonValue, int]:
    """Decode one value from ``buf[pos:end]``; return (value, position after it)."""
    end = min(end, len(buf))
    try:
        return _decode(buf, pos, end, max_depth)
    except RecursionError:
        raise DecodeError("PSON value nested too deeply") from None


def _tag(buf: Buffer, pos: int, end: int) -> tuple[int, int, int]:
    """(type, number, position after the tag) of the tag at ``pos``."""
    if pos >= end:
        raise DecodeError("truncated PSON value")
    tag = buf[pos]
    n = tag & INLINE_MASK
    if n == EXTENDED:
        n, pos = decode_varint(buf, pos + 1, end)
        return tag & TYPE_MASK, n, pos
    return tag & TYPE_MASK, n, pos + 1


def _text(buf: Buffer, pos: int, n: int, end: int) -> str:
    if n > end - pos:
        raise DecodeError(f"string of {n} bytes runs past the end ({end - pos} bytes left)")
    try:
        return str(buf[pos : pos + n], "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid UTF-8 in a PSON string") from None


def _decode(buf: Buffer, pos: int, end: int, depth: int) -> tuple[PsonValue, int]:
    kind, n, pos = _tag(buf, pos, end)
    if kind == STRING:
        return _text(buf, pos, n, end), pos + n
    if kind == UNSIGNED:
        return n, pos
    if kind == MAP:
        return _decode_map(buf, pos, end, n, depth)
    if kind == FLOATING:
        return _decode_float(buf, pos, end, n)
    if kind == DISCRETE:
        if n == 0:
            return False, pos
        if n == 1:
            return True, pos
        if n == 2:
            return None, pos
        raise DecodeError(f"unknown PSON discrete value {n}")
    if kind == ARRAY:
        return _decode_array(buf, pos, end, n, depth)
    if kind == NEGATIVE:
        return -n, pos
    # BYTES, the last of the eight types
    if n > end - pos:
        raise DecodeError(f"bytes of length {n} run past the end ({end - pos} bytes left)")
    return bytes(buf[pos : pos + n]), pos + n


def _decode_float(buf: Buffer, pos: int, end: int, selector: int) -> tuple[PsonValue, int]:
    if selector == 0:
        if end - pos < 4:
            raise DecodeError("truncated float")
        return shortest_float32(F32.unpack_from(buf, pos)[0]), pos + 4
    if selector == 1:
        if end - pos < 8:
            raise DecodeError("truncated double")
        return F64.unpack_from(buf, pos)[0], pos + 8
    raise DecodeError(f"unknown PSON float width {selector}")


def _decode_map(buf: Buffer, pos: int, end: int, count: int, depth: int) -> tuple[PsonValue, int]:
    if depth <= 0:
        raise DecodeError("PSON value nested too deeply")
    if count > (end - pos) // 2:  # every pair takes at least a key tag and a value tag
        raise DecodeError(f"map of {count} pairs cannot fit in {end - pos} bytes")
    obj: dict[str, PsonValue] = {}
    for _ in range(count):
        kind, n, pos = _tag(buf, pos, end)
        if kind != STRING:
            raise DecodeError("PSON map key is not a string")
        key = _text(buf, pos, n, end)
        value, pos = _decode(buf, pos + n, end, depth - 1)
        obj[key] = value
    return obj, pos


def _decode_array(buf: Buffer, pos: int, end: int, count: int, depth: int) -> tuple[PsonValue, int]:
    if depth <= 0:
        raise DecodeError("PSON value nested too deeply")
    if count > end - pos:  # every item takes at least its tag byte
        raise DecodeError(f"array of {count} items cannot fit in {end - pos} bytes")
    items: list[PsonValue] = []
    for _ in range(count):
        value, pos = _decode(buf, pos, end, depth - 1)
        items.append(value)
    return items, pos
