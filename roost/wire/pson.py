"""PSON v1 ("protoson"): the value encoding of the legacy Thinger protocol (protocol.md 2.3).

A value is one tag byte ``(type << 3) | wire`` followed by what the type needs. The encoder makes
exactly the choices of the official C++ library (0 and 1 have their own types, an integral float
goes out as an integer, a double close enough to a float goes out as a 4-byte float), so frames we
build are byte-identical to the ones a device builds.

The decoder is strict: it accepts only the tag bytes of the table (the type id decides, with the
one wire type the C++ encoder writes), checks every length against the bytes left before slicing,
limits nesting and varint length, and raises nothing but :class:`~roost.errors.DecodeError`.
A 4-byte float decodes to the shortest decimal that maps back to the same float32 (``40.4168``
rather than ``40.41680145263672``), always as a Python ``float``; when that decimal is farther than
the encoder's float tolerance from the float32 (large magnitudes only) the exact value is kept,
so that re-encoding gives the same 4 bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

from roost.errors import DecodeError, InvalidInput

PsonValue: TypeAlias = (
    bool | int | float | str | bytes | list["PsonValue"] | dict[str, "PsonValue"] | None
)
# What the encoder accepts: covariant containers, so a list[str] or dict[str, float] type-checks.
PsonInput: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | bytearray
    | memoryview
    | Sequence["PsonInput"]
    | Mapping[str, "PsonInput"]
    | None
)
Buffer: TypeAlias = bytes | bytearray | memoryview
DecodeAt: TypeAlias = Callable[[Buffer, int, int, int], tuple[PsonValue, int]]

MAX_UINT64 = (1 << 64) - 1
VARINT_MAX_BYTES = 10
DEFAULT_MAX_DEPTH = 32
ENCODE_MAX_DEPTH = 128
FLOAT_TOLERANCE = 0.00001

# Tag bytes, (type id << 3) | wire type.
NULL = 0x00
POSITIVE = 0x08
NEGATIVE = 0x10
FLOAT32 = 0x1D
FLOAT64 = 0x21
TRUE = 0x28
FALSE = 0x30
ZERO = 0x38
ONE = 0x40
STRING = 0x4A
EMPTY_STRING = 0x50
BYTES = 0x5A
EMPTY_BYTES = 0x60
OBJECT = 0x6A
ARRAY = 0x72
EMPTY = 0x78

F32 = struct.Struct("<f")
F64 = struct.Struct("<d")
_SIG_FORMATS = tuple(f"%.{p}g" for p in range(10))  # index = significant digits


# -- varints -------------------------------------------------------------------------------------


def encode_varint(n: int, out: bytearray) -> None:
    """Append ``n`` (0 <= n < 2**64) to ``out`` as a base-128 varint."""
    if 0 <= n < 0x80:
        out.append(n)
        return
    if n < 0 or n > MAX_UINT64:
        raise InvalidInput(f"varint {n} is outside [0, 2**64-1]")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def decode_varint(
    buf: Buffer, pos: int, end: int, max_bytes: int = VARINT_MAX_BYTES
) -> tuple[int, int]:
    """Read a varint of at most ``max_bytes`` bytes from ``buf[pos:end]``; return (value, new pos).

    Raises DecodeError if the varint is truncated, longer than ``max_bytes`` or above 2**64-1.
    """
    if pos < end:
        first = buf[pos]
        if first < 0x80:
            return first, pos + 1
    start = pos
    limit = min(end, pos + max_bytes)
    result = 0
    shift = 0
    while pos < limit:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > MAX_UINT64:
                raise DecodeError("varint overflows 64 bits")
            return result, pos
        shift += 7
    if pos - start >= max_bytes:
        raise DecodeError(f"varint longer than {max_bytes} bytes")
    raise DecodeError("truncated varint")


# -- encoder -------------------------------------------------------------------------------------


def encode(value: PsonInput) -> bytes:
    """Encode one value; raises InvalidInput for anything PSON v1 cannot carry."""
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


def utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"string is not encodable as UTF-8: {exc.reason}") from None


def _encode(value: object, out: bytearray, depth: int) -> None:
    if isinstance(value, str):
        if value:
            data = utf8(value)
            out.append(STRING)
            encode_varint(len(data), out)
            out += data
        else:
            out.append(EMPTY_STRING)
    elif isinstance(value, bool):
        out.append(TRUE if value else FALSE)
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, float):
        _encode_float(value, out)
    elif isinstance(value, dict):
        _encode_object(value, out, depth)
    elif value is None:
        out.append(NULL)
    elif isinstance(value, list | tuple):
        _encode_array(value, out, depth)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if data:
            out.append(BYTES)
            encode_varint(len(data), out)
            out += data
        else:
            out.append(EMPTY_BYTES)
    else:
        raise InvalidInput(f"PSON cannot encode a value of type {type(value).__name__}")


def _encode_int(n: int, out: bytearray) -> None:
    if n > 1:
        if n > MAX_UINT64:
            raise InvalidInput(f"integer {n} is above 2**64-1")
        out.append(POSITIVE)
        encode_varint(n, out)
    elif n == 1:
        out.append(ONE)
    elif n == 0:
        out.append(ZERO)
    else:
        if n < -MAX_UINT64:
            raise InvalidInput(f"integer {n} is below -(2**64-1)")
        out.append(NEGATIVE)
        encode_varint(-n, out)


def _encode_float(d: float, out: bytearray) -> None:
    if d.is_integer() and -MAX_UINT64 <= d <= MAX_UINT64:
        _encode_int(int(d), out)
        return
    if math.isfinite(d):
        try:
            packed = F32.pack(d)
        except OverflowError:
            packed = b""
        if packed and abs(d - F32.unpack(packed)[0]) <= FLOAT_TOLERANCE:
            out.append(FLOAT32)
            out += packed
            return
    out.append(FLOAT64)
    out += F64.pack(d)


def _close_container(out: bytearray, start: int) -> None:
    """Insert the content length (a varint) in front of the content that starts at ``start``."""
    size = len(out) - start
    if size < 0x80:
        out.insert(start, size)
    else:
        header = bytearray()
        encode_varint(size, header)
        out[start:start] = header


def _encode_object(obj: dict[object, object], out: bytearray, depth: int) -> None:
    if depth >= ENCODE_MAX_DEPTH:
        raise InvalidInput(f"value nested deeper than {ENCODE_MAX_DEPTH} levels")
    out.append(OBJECT)
    start = len(out)
    for key, item in obj.items():
        if not isinstance(key, str):
            raise InvalidInput(f"PSON object keys must be str, not {type(key).__name__}")
        data = utf8(key)
        encode_varint(len(data), out)
        out += data
        _encode(item, out, depth + 1)
    _close_container(out, start)


def _encode_array(items: list[object] | tuple[object, ...], out: bytearray, depth: int) -> None:
    if depth >= ENCODE_MAX_DEPTH:
        raise InvalidInput(f"value nested deeper than {ENCODE_MAX_DEPTH} levels")
    out.append(ARRAY)
    start = len(out)
    for item in items:
        _encode(item, out, depth + 1)
    _close_container(out, start)


# -- decoder -------------------------------------------------------------------------------------


def decode(data: Buffer, *, max_depth: int = DEFAULT_MAX_DEPTH) -> PsonValue:
    """Decode exactly one value that spans all of ``data``.

    ``max_depth`` is the number of nested objects/arrays allowed (1 allows ``[1, 2]`` but not
    ``[[1]]``).
    """
    return decode_whole(decode_at, data, max_depth)


def decode_whole(decode_at: DecodeAt, data: Buffer, max_depth: int) -> PsonValue:
    """Decode with ``decode_at`` exactly one value that spans all of ``data`` (either version)."""
    if isinstance(data, memoryview) and data.format != "B":
        data = data.cast("B")
    end = len(data)
    value, pos = decode_at(data, 0, end, max_depth)
    if pos != end:
        raise DecodeError(f"{end - pos} trailing bytes after a PSON value")
    return value


def decode_at(
    buf: Buffer, pos: int, end: int, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[PsonValue, int]:
    """Decode one value from ``buf[pos:end]``; return (value, position after it)."""
    end = min(end, len(buf))
    try:
        return _decode(buf, pos, end, max_depth)
    except RecursionError:
        raise DecodeError("PSON value nested too deeply") from None


def _length(buf: Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read a length varint and check that many bytes are left before ``end``."""
    n, pos = decode_varint(buf, pos, end)
    if n > end - pos:
        raise DecodeError(f"length {n} runs past the end ({end - pos} bytes left)")
    return n, pos


def _text(buf: Buffer, start: int, stop: int) -> str:
    try:
        return str(buf[start:stop], "utf-8")
    except UnicodeDecodeError:
        raise DecodeError("invalid UTF-8 in a PSON string") from None


def _decode(buf: Buffer, pos: int, end: int, depth: int) -> tuple[PsonValue, int]:
    if pos >= end:
        raise DecodeError("truncated PSON value")
    tag = buf[pos]
    pos += 1
    if tag == STRING:
        n, pos = _length(buf, pos, end)
        return _text(buf, pos, pos + n), pos + n
    if tag == POSITIVE:
        return decode_varint(buf, pos, end)
    if tag == FLOAT32:
        if end - pos < 4:
            raise DecodeError("truncated float")
        return shortest_float32(F32.unpack_from(buf, pos)[0]), pos + 4
    if tag == OBJECT:
        return _decode_object(buf, pos, end, depth)
    if tag == ARRAY:
        return _decode_array(buf, pos, end, depth)
    if tag == ZERO:
        return 0, pos
    if tag == ONE:
        return 1, pos
    if tag == TRUE:
        return True, pos
    if tag == FALSE:
        return False, pos
    if tag == NEGATIVE:
        n, pos = decode_varint(buf, pos, end)
        return -n, pos
    if tag == FLOAT64:
        if end - pos < 8:
            raise DecodeError("truncated double")
        return F64.unpack_from(buf, pos)[0], pos + 8
    if tag in (NULL, EMPTY):
        return None, pos
    if tag == EMPTY_STRING:
        return "", pos
    if tag == BYTES:
        n, pos = _length(buf, pos, end)
        return bytes(buf[pos : pos + n]), pos + n
    if tag == EMPTY_BYTES:
        return b"", pos
    raise DecodeError(f"unknown PSON tag 0x{tag:02x}")


def _decode_object(buf: Buffer, pos: int, end: int, depth: int) -> tuple[PsonValue, int]:
    if depth <= 0:
        raise DecodeError("PSON value nested too deeply")
    size, pos = _length(buf, pos, end)
    stop = pos + size
    obj: dict[str, PsonValue] = {}
    while pos < stop:
        n, pos = _length(buf, pos, stop)
        key = _text(buf, pos, pos + n)
        value, pos = _decode(buf, pos + n, stop, depth - 1)
        obj[key] = value
    return obj, pos


def _decode_array(buf: Buffer, pos: int, end: int, depth: int) -> tuple[PsonValue, int]:
    if depth <= 0:
        raise DecodeError("PSON value nested too deeply")
    size, pos = _length(buf, pos, end)
    stop = pos + size
    items: list[PsonValue] = []
    while pos < stop:
        value, pos = _decode(buf, pos, stop, depth - 1)
        items.append(value)
    return items, pos


def _is_float32(candidate: float, x: float) -> bool:
    try:
        return bool(F32.unpack(F32.pack(candidate))[0] == x)
    except OverflowError:
        return False


def shortest_float32(x: float) -> float:
    """The shortest decimal (1..9 significant digits) that rounds to the same float32 as ``x``."""
    if not math.isfinite(x):
        return x
    # Round-tripping is monotonic in the number of digits (more digits are never farther from x),
    # so the shortest is the first p in 1..9 that round-trips (9 always does). Most sensor values
    # have at most 7 significant digits: try 7 first; if it round-trips with k digits left once
    # %g drops trailing zeros, that decimal is also the rounding to k digits, and it is the
    # shortest unless k - 1 digits round-trip too.
    text = _SIG_FORMATS[7] % x
    best = float(text)
    if _is_float32(best, x):
        digits = _significant_digits(text)
        if digits > 1 and _is_float32(float(_SIG_FORMATS[digits - 1] % x), x):
            best = _first_round_trip(x, 1, digits - 1)
    else:
        best = _first_round_trip(x, 8, 9)
    # Above ~256 the shortest decimal can sit farther than FLOAT_TOLERANCE from the float32, and
    # would then re-encode as a double: keep the exact value so decode -> encode is stable.
    return best if abs(best - x) <= FLOAT_TOLERANCE else x


def _significant_digits(text: str) -> int:
    """Significant digits in a %g rendering (``-0.0012``: 2, ``1.5e+20``: 2)."""
    mantissa = text.partition("e")[0]
    return len(mantissa.replace("-", "").replace(".", "").lstrip("0"))


def _first_round_trip(x: float, lo: int, hi: int) -> float:
    """float(%.{p}g % x) for the smallest p in lo..hi that round-trips (hi must)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if _is_float32(float(_SIG_FORMATS[mid] % x), x):
            hi = mid
        else:
            lo = mid + 1
    return float(_SIG_FORMATS[lo] % x)
