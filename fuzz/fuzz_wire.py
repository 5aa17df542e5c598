"""Coverage-guided fuzz targets for the sans-IO wire codecs (roost/wire).

Usage (see fuzz/README.md)::

    .venv/bin/python fuzz/fuzz_wire.py TARGET [libFuzzer arguments and corpus dirs ...]

TARGET is one of ``pson1``, ``pson2``, ``legacy``, ``iotmp``. Without atheris installed, run the
same targets under the plain mutation driver: ``.venv/bin/python fuzz/driver.py TARGET``.

The contract checked (docs/design.md 5): for ANY input, decoding raises only
:class:`roost.errors.DecodeError`; whatever decodes re-encodes and decodes again to the same
thing (floats: bytes are stable after a second round trip, exactly as the hypothesis tests say);
the incremental decoders give the same frames however the stream is chunked, stay poisoned after
their first error, and buffer no more than one frame's worth of bytes. Every other exception,
including a failed ``assert``, is a finding and is left to propagate.

Input layout:

* ``pson1`` / ``pson2``: the input is one PSON value (what ``decode`` gets).
* ``legacy`` / ``iotmp``: the first byte is a seed (bits 0-1: number of chunks 1-3, bits 2-3:
  ``max_frame``, bits 4-5: ``max_depth``, all 8 bits: where the chunks are cut); the rest is the
  byte stream fed to ``Decoder``.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import sys
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from enum import IntEnum

try:
    import atheris
except ImportError:  # the plain driver (fuzz/driver.py) needs no atheris
    atheris = None

if atheris is not None:
    with atheris.instrument_imports():
        from roost.errors import DecodeError
        from roost.wire import framing, iotmp, legacy, pson, pson2
else:
    from roost.errors import DecodeError
    from roost.wire import framing, iotmp, legacy, pson, pson2

# Limits picked by seed bits 2-3 and 4-5 of the framed targets.
MAX_FRAMES = (framing.DEFAULT_MAX_FRAME, 256, 32, 0)
MAX_DEPTHS = (pson.DEFAULT_MAX_DEPTH, 1, 2, 8)
# A decoder holds at most one incomplete frame: two header varints and a body <= max_frame.
HEADER_MAX = 2 * framing.HEADER_VARINT_MAX_BYTES
# Limits of the decoders that read back what we re-encoded (a float32 may grow into a float64).
REDECODE_MAX_FRAME = 1 << 24


# -- comparison helpers --------------------------------------------------------------------------


def typed(value: object) -> object:
    """A comparable form that keeps types apart (True != 1, 1.0 != 1, b"" != ""), NaN == NaN,
    dict order kept, and an IntEnum read as its number."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return ("list", [typed(v) for v in value])
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, IntEnum):
        return ("int", int(value))
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, [typed(getattr(value, f.name)) for f in fields(value)])
    return (type(value).__name__, value)


def has_float(value: object) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(has_float(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_float(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return any(has_float(getattr(value, f.name)) for f in fields(value))
    return False


def close(a: object, b: object) -> bool:
    """Same shape; numbers equal, except that a float may have moved by a float32 rounding (and
    may now be read as an integer)."""
    a_num = isinstance(a, int | float) and not isinstance(a, bool)
    b_num = isinstance(b, int | float) and not isinstance(b, bool)
    if a_num or b_num:
        if not (a_num and b_num):
            return False
        if not isinstance(a, float) and not isinstance(b, float):
            return a == b
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return fa == fb or math.isclose(fa, fb, rel_tol=1e-6, abs_tol=2e-5)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(close(x, y) for x, y in zip(a, b, strict=True))
        )
    if is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            close(getattr(a, f.name), getattr(b, f.name)) for f in fields(a)
        )
    return typed(a) == typed(b)


# -- PSON values ---------------------------------------------------------------------------------


def _check_value_round_trip(codec, value: object) -> None:
    """``value`` came out of ``codec.decode``: it must encode, decode back to the same thing and be
    byte-stable after a second round trip."""
    enc1 = codec.encode(value)  # InvalidInput here is a finding: a decoded value must encode
    value2 = codec.decode(enc1)
    assert close(value, value2), (value, value2)
    enc2 = codec.encode(value2)
    if not has_float(value):
        assert typed(value2) == typed(value), (value, value2)
        assert enc2 == enc1, (enc1.hex(), enc2.hex())
    # Floats: a v1 float may change on the first re-encode (an integral float32 reads back as an
    # integer; a double near a float32 goes out as one), a v2 float32 re-encodes as a float64;
    # after that the bytes are stable.
    value3 = codec.decode(enc2)
    enc3 = codec.encode(value3)
    assert enc3 == enc2, (enc2.hex(), enc3.hex())


def _pson_target(codec, data: bytes) -> None:
    try:
        value = codec.decode(data)
    except DecodeError:
        value = _NOTHING
    # The buffer types the decoders accept give the same answer.
    for view in (bytearray(data), memoryview(data), memoryview(data).cast("b")):
        try:
            other = codec.decode(view)
        except DecodeError:
            assert value is _NOTHING, ("decodes as bytes but not as", type(view).__name__)
            continue
        assert value is not _NOTHING, ("decodes as", type(view).__name__, "but not as bytes")
        assert typed(other) == typed(value), (value, other)
    # An absurd depth limit still raises only DecodeError (RecursionError is turned into one) and
    # cannot change a value that decodes within the default limit.
    try:
        deep = codec.decode(data, max_depth=10**9)
    except DecodeError:
        assert value is _NOTHING, "decodes with the default depth but not with a larger one"
    else:
        if value is not _NOTHING:
            assert typed(deep) == typed(value), (value, deep)
    if value is _NOTHING:
        return
    _check_value_round_trip(codec, value)
    # The two PSON versions share one value model: what one decodes, the other carries.
    other_codec = pson2 if codec is pson else pson
    _check_value_round_trip(other_codec, other_codec.decode(other_codec.encode(value)))


_NOTHING = object()


def fuzz_pson1(data: bytes) -> None:
    _pson_target(pson, data)


def fuzz_pson2(data: bytes) -> None:
    _pson_target(pson2, data)


# -- framed protocols ----------------------------------------------------------------------------


def _chunks(stream: bytes, seed: int) -> list[bytes]:
    n = 1 + (seed & 3) % 3
    if len(stream) < 2 or n == 1:
        return [stream]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(stream)), min(n - 1, len(stream) - 1)))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def _feed_all(make: Callable[[], object], chunks: list[bytes]) -> tuple[object, list, bool]:
    """Feed ``chunks`` to a fresh decoder: (decoder, frames, whether a DecodeError was raised)."""
    decoder = make()
    frames: list = []
    for chunk in chunks:
        try:
            frames += decoder.feed(chunk)
        except DecodeError:
            return decoder, frames, True
    return decoder, frames, False


def _check_poisoned(decoder) -> None:
    assert decoder.buffered == 0, decoder.buffered
    for data in (b"", b"\x01\x00", b"\x02\x00", b"\x05\x00"):
        try:
            decoder.feed(data)
        except DecodeError:
            continue
        raise AssertionError(f"decoder accepted {data.hex()} after an error")


def _framed_target(module, frame_types: tuple[type, ...], data: bytes) -> None:
    if not data:
        return
    seed, stream = data[0], data[1:]
    max_frame = MAX_FRAMES[(seed >> 2) & 3]
    max_depth = MAX_DEPTHS[(seed >> 4) & 3]

    def make():
        return module.Decoder(max_frame=max_frame, max_depth=max_depth)

    whole, frames, failed = _feed_all(make, [stream])
    # The chunks go in as the buffer types a transport may hand over.
    chunks = [
        (bytes, bytearray, memoryview)[i % 3](chunk)
        for i, chunk in enumerate(_chunks(stream, seed))
    ]
    split, split_frames, split_failed = _feed_all(make, chunks)

    # Any chunking decodes the same: the same error, or the same frames and leftover.
    assert split_failed == failed, (len(chunks), failed, split_failed)
    if failed:
        assert frames == [], "frames returned by the feed that raised"
        _check_poisoned(whole)
        _check_poisoned(split)
        return
    assert [typed(f) for f in split_frames] == [typed(f) for f in frames], (frames, split_frames)
    assert split.buffered == whole.buffered, (whole.buffered, split.buffered)
    # Memory bounded by the limits: at most one incomplete frame is held.
    assert whole.buffered < HEADER_MAX + max_frame, (whole.buffered, max_frame)
    assert whole.buffered <= len(stream)

    for frame in frames:
        assert isinstance(frame, frame_types), type(frame)
    if module is iotmp:
        for frame in frames:
            assert isinstance(frame.type, iotmp.MessageType), frame.type
    if not frames:
        return

    # Round trip: every decoded frame encodes (InvalidInput would be a finding), and the whole
    # re-encoded stream decodes back to the same frames; bytes stable after a second round trip.
    def redecode(encoded: bytes) -> list:
        decoder = module.Decoder(max_frame=REDECODE_MAX_FRAME, max_depth=pson.DEFAULT_MAX_DEPTH)
        out = decoder.feed(encoded)
        assert decoder.buffered == 0, decoder.buffered
        return out

    encoded = [module.encode(f) for f in frames]
    enc1 = b"".join(encoded)
    frames2 = redecode(enc1)
    assert len(frames2) == len(frames), (len(frames), len(frames2))
    for a, b, e in zip(frames, frames2, encoded, strict=True):
        assert close(a, b), (a, b)
        if not has_float(a):
            assert typed(a) == typed(b), (a, b)
            assert module.encode(b) == e, (e.hex(), module.encode(b).hex())
    enc2 = b"".join(module.encode(f) for f in frames2)
    enc3 = b"".join(module.encode(f) for f in redecode(enc2))
    assert enc3 == enc2, (enc2.hex(), enc3.hex())


def fuzz_legacy(data: bytes) -> None:
    _framed_target(legacy, (legacy.Message, legacy.KeepAlive), data)


def fuzz_iotmp(data: bytes) -> None:
    _framed_target(iotmp, (iotmp.Message,), data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pson1": fuzz_pson1,
    "pson2": fuzz_pson2,
    "legacy": fuzz_legacy,
    "iotmp": fuzz_iotmp,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer args ...]")
    target = TARGETS[argv[1]]
    if atheris is None:
        sys.exit("atheris is not installed: `.venv/bin/pip install atheris`, or run fuzz/driver.py")
    # libFuzzer re-runs argv[0] through the shell for -minimize_crash, -fork and -merge: make it a
    # command line that runs this file with this interpreter on this target.
    command = " ".join(shlex.quote(a) for a in (sys.executable, os.path.abspath(argv[0]), argv[1]))
    atheris.Setup([command, *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
