"""PSON v1 codec: the worked examples of protocol.md 2.3, encoder choices, strict decoding."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from roost.errors import DecodeError, InvalidInput
from roost.wire import pson
from roost.wire.pson import PsonValue

MAX = 2**64 - 1


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def typed(value: object) -> object:
    """A comparable form that keeps types apart (True != 1, 1.0 != 1, b"" != "")."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


# -- protocol.md 2.3 worked examples, both ways ----------------------------------------------------

WORKED_EXAMPLES: list[tuple[PsonValue, str]] = [
    ({"in": True}, "6a 04 02 69 6e 28"),
    (-3, "10 03"),
    (-300, "10 ac 02"),
    (300, "08 ac 02"),
    (0, "38"),
    (1, "40"),
    (23.5, "1d 00 00 bc 41"),
    (1234567.891, "21 75 93 18 e4 87 d6 32 41"),
    ({"sum": 7, "mult": 12}, "6a 0d 03 73 75 6d 08 07 04 6d 75 6c 74 08 0c"),
    (
        {"location": {"lat": 40.4168, "lon": -3.7038}},
        "6a 1d 08 6c 6f 63 61 74 69 6f 6e"
        " 6a 12 03 6c 61 74 1d ce aa 21 42 03 6c 6f 6e 1d 0f 0b 6d c0",
    ),
    (
        ["alice", "dev1", "secret1"],
        "72 16 4a 05 61 6c 69 63 65 4a 04 64 65 76 31 4a 07 73 65 63 72 65 74 31",
    ),
    (b"\x01\x02", "5a 02 01 02"),
]


@pytest.mark.parametrize(("value", "hexbytes"), WORKED_EXAMPLES)
def test_worked_example_encodes(value: PsonValue, hexbytes: str) -> None:
    assert pson.encode(value) == h(hexbytes)


@pytest.mark.parametrize(("value", "hexbytes"), WORKED_EXAMPLES)
def test_worked_example_decodes(value: PsonValue, hexbytes: str) -> None:
    assert typed(pson.decode(h(hexbytes))) == typed(value)


# -- encoder choices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hexbytes"),
    [
        (None, "00"),
        (True, "28"),
        (False, "30"),
        (2, "08 02"),
        (-1, "10 01"),
        ("", "50"),
        ("a", "4a 01 61"),
        ("é", "4a 02 c3 a9"),
        (b"", "60"),
        ({}, "6a 00"),
        ([], "72 00"),
        ((1, 2), "72 03 40 08 02"),
        ({"": None}, "6a 02 00 00"),
        (MAX, "08 ff ff ff ff ff ff ff ff ff 01"),
        (-MAX, "10 ff ff ff ff ff ff ff ff ff 01"),
        (3.0, "08 03"),
        (-2.0, "10 02"),
        (0.0, "38"),
        (1.0, "40"),
        (0.1, "1d cd cc cc 3d"),
        (float("inf"), "21 00 00 00 00 00 00 f0 7f"),
        (float("-inf"), "21 00 00 00 00 00 00 f0 ff"),
        (1e300, "21" + struct.pack("<d", 1e300).hex()),
    ],
)
def test_encoder_choices(value: PsonValue, hexbytes: str) -> None:
    assert pson.encode(value) == h(hexbytes)


def test_bool_is_not_encoded_as_integer() -> None:
    assert pson.encode([True, 1, False, 0]) == h("72 04 28 40 30 38")


def test_nan_is_a_double() -> None:
    encoded = pson.encode(float("nan"))
    assert encoded[0] == 0x21 and len(encoded) == 9
    assert math.isnan(struct.unpack("<d", encoded[1:])[0])


def test_long_container_length_uses_a_multi_byte_varint() -> None:
    value = ["x" * 200]
    encoded = pson.encode(value)
    assert encoded[:5] == h("72 cb 01 4a c8")  # 203 content bytes, string of 200
    assert pson.decode(encoded) == value


@pytest.mark.parametrize(
    "value",
    [
        MAX + 1,
        -MAX - 1,
        {1: "a"},
        {("a",): 1},
        {1.5},
        object(),
        "\ud800",
        {"\udc00": 1},
        [[{2: 3}]],
    ],
)
def test_unencodable_values_raise_invalid_input(value: object) -> None:
    with pytest.raises(InvalidInput):
        pson.encode(value)  # type: ignore[arg-type]


def test_encode_into_appends_and_leaves_out_unchanged_on_error() -> None:
    out = bytearray(b"\xaa")
    pson.encode_into([1, "a"], out)
    assert out == h("aa 72 04 40 4a 01 61")
    with pytest.raises(InvalidInput):
        pson.encode_into([1, 2, object()], out)  # type: ignore[list-item]
    assert out == h("aa 72 04 40 4a 01 61")


def test_self_referencing_value_raises_invalid_input() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidInput):
        pson.encode(loop)  # type: ignore[arg-type]


# -- decoder ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexbytes", "expected"),
    [
        ("1d ce aa 21 42", 40.4168),
        ("1d 0f 0b 6d c0", -3.7038),
        ("1d 00 00 40 40", 3.0),
        ("1d 00 00 00 00", 0.0),
        ("1d cd cc cc 3d", 0.1),
        ("1d 01 24 74 49", 1000000.0625),  # shortest decimal 1000000.06 would re-encode as double
        ("21 00 00 00 00 00 00 08 40", 3.0),
        ("78", None),
        ("08 00", 0),  # non-canonical but valid
        ("0800", 0),
        ("10 00", 0),
        ("08 ff ff ff ff ff ff ff ff ff 01", MAX),
        ("6a 07 01 61 40 01 61 08 02", {"a": 2}),  # duplicate key: last wins
        ("72 00", []),
        ("6a 00", {}),
        ("72 03 00 78 50", [None, None, ""]),
        ("5a 01 00", b"\x00"),
    ],
)
def test_decoder_values(hexbytes: str, expected: PsonValue) -> None:
    assert typed(pson.decode(h(hexbytes))) == typed(expected)


def test_float32_infinity_and_nan_are_kept() -> None:
    assert pson.decode(struct.pack("<Bf", 0x1D, float("inf"))) == float("inf")
    nan = pson.decode(struct.pack("<Bf", 0x1D, float("nan")))
    assert isinstance(nan, float) and math.isnan(nan)


@pytest.mark.parametrize(
    "hexbytes",
    [
        "",  # nothing
        "08",  # truncated varint
        "08 80",
        "08 80 80 80 80 80 80 80 80 80 80 01",  # 11-byte varint
        "08 ff ff ff ff ff ff ff ff ff 02",  # 2**64: overflow
        "1d 00 00 bc",  # truncated float
        "21 00 00 00 00 00 00 00",  # truncated double
        "4a 05 61 62",  # string shorter than declared
        "4a 02 c3 28",  # invalid UTF-8
        "4a 01 ff",
        "6a 04 02 c3 28 40",  # invalid UTF-8 key
        "6a 03 05 61 62",  # key longer than the object
        "6a 02 01 61",  # key without value
        "6a 03 01 61 08",  # value truncated at the object's end
        "6a 05 01 61 08 02",  # object longer than data
        "72 01 08",  # array element runs past the array
        "72 03 40",  # array shorter than declared
        "5a 80 80 80 80 80 80 80 80 40",  # bytes of length 2**62, no data
        "0a 01",  # type 1 with the wrong wire type: strict
        "18",  # unknown type 3 wire 0
        "80 01",  # multi-byte tag
        "f8",
        "7a 00",  # type 15 with wire 2
        "40 40",  # trailing bytes
        "38 00",
    ],
)
def test_invalid_input_raises_decode_error(hexbytes: str) -> None:
    with pytest.raises(DecodeError):
        pson.decode(h(hexbytes))


def nested_arrays(depth: int) -> bytes:
    data = b"\x72\x00"
    for _ in range(depth - 1):
        inner = bytearray(b"\x72")
        pson.encode_varint(len(data), inner)
        data = bytes(inner) + data
    return data


def test_max_depth() -> None:
    assert pson.decode(nested_arrays(32)) is not None
    with pytest.raises(DecodeError):
        pson.decode(nested_arrays(33))
    assert pson.decode(h("72 02 40 40"), max_depth=1) == [1, 1]
    with pytest.raises(DecodeError):
        pson.decode(h("72 02 72 00"), max_depth=1)
    with pytest.raises(DecodeError):
        pson.decode(h("6a 04 01 61 6a 00"), max_depth=1)
    with pytest.raises(DecodeError):
        pson.decode(h("72 00"), max_depth=0)
    assert pson.decode(h("40"), max_depth=0) == 1


def test_absurd_max_depth_still_raises_only_decode_error() -> None:
    with pytest.raises(DecodeError):
        pson.decode(nested_arrays(5000), max_depth=10**9)


def test_decode_at_reads_one_value_in_a_window() -> None:
    buf = memoryview(h("ff 4a 02 68 69 40 ff"))
    assert pson.decode_at(buf, 1, 6) == ("hi", 5)
    assert pson.decode_at(buf, 5, 6) == (1, 6)
    with pytest.raises(DecodeError):
        pson.decode_at(buf, 1, 4)  # the window ends inside the string


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = h("6a 09 03 6f 75 74 1d 00 00 bc 41")
    assert pson.decode(bytearray(data)) == {"out": 23.5}
    assert pson.decode(memoryview(data)) == {"out": 23.5}


# -- varints ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "hexbytes"),
    [(0, "00"), (127, "7f"), (300, "ac 02"), (2000, "d0 0f"), (17767, "e7 8a 01")],
)
def test_varint(n: int, hexbytes: str) -> None:
    out = bytearray()
    pson.encode_varint(n, out)
    assert out == h(hexbytes)
    assert pson.decode_varint(out, 0, len(out)) == (n, len(out))


def test_varint_limits() -> None:
    with pytest.raises(InvalidInput):
        pson.encode_varint(-1, bytearray())
    with pytest.raises(InvalidInput):
        pson.encode_varint(MAX + 1, bytearray())
    with pytest.raises(DecodeError):
        pson.decode_varint(h("80 80 80 80 80 00"), 0, 6, max_bytes=5)
    assert pson.decode_varint(h("80 80 80 80 01"), 0, 5, max_bytes=5) == (1 << 28, 5)
    with pytest.raises(DecodeError):
        pson.decode_varint(h("80 80"), 0, 2)


# -- properties ------------------------------------------------------------------------------------

scalars = (
    st.none() | st.booleans() | st.integers(min_value=-MAX, max_value=MAX) | st.text() | st.binary()
)


def values(leaves: st.SearchStrategy[PsonValue]) -> st.SearchStrategy[PsonValue]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=8), children, max_size=5)
        ),
        max_leaves=20,
    )


@settings(max_examples=300)
@given(values(scalars))
def test_round_trip_without_floats_is_exact(value: PsonValue) -> None:
    assert typed(pson.decode(pson.encode(value))) == typed(value)


def rounds_to_integral_float32(d: float) -> bool:
    """A non-integral double whose float32 is integral: sent as float32, read back as integer."""
    try:
        f = struct.unpack("<f", struct.pack("<f", d))[0]
    except OverflowError:
        return False
    return math.isfinite(d) and not d.is_integer() and f.is_integer()


def floats_in(value: PsonValue) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, list):
        return [f for item in value for f in floats_in(item)]
    if isinstance(value, dict):
        return [f for item in value.values() for f in floats_in(item)]
    return []


@settings(max_examples=300)
@given(values(scalars | st.floats() | st.floats(width=32)))
def test_round_trip_with_floats_re_encodes_identically(value: PsonValue) -> None:
    assume(not any(rounds_to_integral_float32(f) for f in floats_in(value)))
    once = pson.encode(value)
    assert pson.encode(pson.decode(once)) == once


@settings(max_examples=300)
@given(st.floats())
def test_any_float_is_stable_after_one_round_trip(value: float) -> None:
    once = pson.encode(pson.decode(pson.encode(value)))
    assert pson.encode(pson.decode(once)) == once
    decoded = pson.decode(pson.encode(value))
    assert isinstance(decoded, int | float)
    if math.isfinite(value):
        assert abs(decoded - value) <= 2e-5  # float32 within 1e-5, then the shortest decimal


@settings(max_examples=2000)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_decodes_to_its_shortest_decimal(value: float) -> None:
    """The definition, checked against the fast search: the fewest %g digits that round-trip."""
    f32 = struct.Struct("<f")

    def round_trips(p: int) -> bool:
        try:
            return bool(f32.unpack(f32.pack(float(f"{value:.{p}g}")))[0] == value)
        except OverflowError:  # rounded up past the largest float32
            return False

    digits = next(p for p in range(1, 10) if round_trips(p))
    shortest = float(f"{value:.{digits}g}")
    expected = shortest if abs(shortest - value) <= pson.FLOAT_TOLERANCE else value
    assert pson.shortest_float32(value) == expected


def test_integral_float32_reads_back_as_integer() -> None:
    # The documented exception to the property above, as the C++ encoder does it.
    once = pson.encode(2.0000001)
    assert once == h("1d 00 00 00 40")
    assert pson.encode(pson.decode(once)) == h("08 02")


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = pson.decode(data)
    except DecodeError:
        return
    # Whatever decodes is a PSON value that encodes again.
    pson.encode(value)
