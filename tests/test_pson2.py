"""PSON v2 codec: the worked examples of protocol.md 3.4, encoder choices, strict decoding."""

from __future__ import annotations

import math
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.errors import DecodeError, InvalidInput
from roost.wire import pson, pson2
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


# -- protocol.md 3.4 worked examples, both ways ----------------------------------------------------

WORKED_EXAMPLES: list[tuple[PsonValue, str]] = [
    ({"in": True}, "c1 82 69 6e 61"),
    (-3, "23"),
    (-300, "3f ac 02"),
    (300, "1f ac 02"),
    (2000, "1f d0 0f"),
    (0, "00"),
    (1, "01"),
    (23.5, "40 00 00 bc 41"),
    (3.141592653589793, "41 18 2d 44 54 fb 21 09 40"),
    ({"interval": 2000}, "c1 88 69 6e 74 65 72 76 61 6c 1f d0 0f"),
    (
        {"lat": 40.4168, "lon": -3.7038},
        "c2 83 6c 61 74 41 85 7c d0 b3 59 35 44 40 83 6c 6f 6e 41 fe 65 f7 e4 61 a1 0d c0",
    ),
    (
        ["alice", "dev1", "secret1"],
        "e3 85 61 6c 69 63 65 84 64 65 76 31 87 73 65 63 72 65 74 31",
    ),
    ("x" * 31, "9f 1f" + " 78" * 31),
    (b"\x01\x02", "a2 01 02"),
    (None, "62"),
    ("", "80"),
]


@pytest.mark.parametrize(("value", "hexbytes"), WORKED_EXAMPLES)
def test_worked_example_encodes(value: PsonValue, hexbytes: str) -> None:
    assert pson2.encode(value) == h(hexbytes)


@pytest.mark.parametrize(("value", "hexbytes"), WORKED_EXAMPLES)
def test_worked_example_decodes(value: PsonValue, hexbytes: str) -> None:
    assert typed(pson2.decode(h(hexbytes))) == typed(value)


# -- encoder choices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hexbytes"),
    [
        (True, "61"),
        (False, "60"),
        (30, "1e"),
        (31, "1f 1f"),
        (127, "1f 7f"),
        (128, "1f 80 01"),
        (-1, "21"),
        (-30, "3e"),
        (-31, "3f 1f"),
        (MAX, "1f ff ff ff ff ff ff ff ff ff 01"),
        (-MAX, "3f ff ff ff ff ff ff ff ff ff 01"),
        ("a", "81 61"),
        ("é", "82 c3 a9"),
        ("x" * 30, "9e" + " 78" * 30),
        (b"", "a0"),
        (b"\x00" * 31, "bf 1f" + " 00" * 31),
        (bytearray(b"\x07"), "a1 07"),
        (memoryview(b"\x07"), "a1 07"),
        ({}, "c0"),
        ([], "e0"),
        ((1, 2), "e2 01 02"),
        ({"": None}, "c1 80 62"),
        ([[]], "e1 e0"),
        (3.0, "03"),
        (-2.0, "22"),
        (0.0, "00"),
        (-0.0, "00"),
        (0.5, "40 00 00 00 3f"),
        (-1.5, "40 00 00 c0 bf"),
        (0.1, "41 9a 99 99 99 99 99 b9 3f"),  # not a float32: double
        (40.41680145263672, "40 ce aa 21 42"),  # exactly the float32 nearest 40.4168
        (float("inf"), "40 00 00 80 7f"),
        (float("-inf"), "40 00 00 80 ff"),
        (2.0**64, "40 00 00 80 5f"),  # integral but above 2**64-1: an exact float32
        (1e300, "41" + struct.pack("<d", 1e300).hex()),
        (1e39, "41" + struct.pack("<d", 1e39).hex()),  # beyond float32's range
    ],
)
def test_encoder_choices(value: PsonValue, hexbytes: str) -> None:
    assert pson2.encode(value) == h(hexbytes)


def test_bool_is_not_encoded_as_integer() -> None:
    assert pson2.encode([True, 1, False, 0]) == h("e4 61 01 60 00")


def test_nan_is_a_double() -> None:
    encoded = pson2.encode(float("nan"))
    assert encoded[0] == 0x41 and len(encoded) == 9
    assert math.isnan(struct.unpack("<d", encoded[1:])[0])


def test_sizes_are_element_counts() -> None:
    value = {f"k{i:02}": i for i in range(31)}
    encoded = pson2.encode(value)
    assert encoded[:2] == h("df 1f")  # 31 pairs, not a byte length
    assert encoded[2:6] == h("83 6b 30 30")
    assert pson2.decode(encoded) == value
    items = ["x" * 200] * 40
    encoded = pson2.encode(items)
    assert encoded[:4] == h("ff 28 9f c8")  # 40 items, then a string of 200 bytes
    assert pson2.decode(encoded) == items


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
        pson2.encode(value)  # type: ignore[arg-type]


def test_encode_into_appends_and_leaves_out_unchanged_on_error() -> None:
    out = bytearray(b"\xaa")
    pson2.encode_into([1, "a"], out)
    assert out == h("aa e2 01 81 61")
    with pytest.raises(InvalidInput):
        pson2.encode_into([1, 2, object()], out)  # type: ignore[list-item]
    assert out == h("aa e2 01 81 61")


def test_self_referencing_value_raises_invalid_input() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidInput):
        pson2.encode(loop)  # type: ignore[arg-type]
    cycle: dict[str, object] = {}
    cycle["a"] = cycle
    with pytest.raises(InvalidInput):
        pson2.encode(cycle)  # type: ignore[arg-type]


# -- decoder ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hexbytes", "expected"),
    [
        ("40 ce aa 21 42", 40.4168),  # a float32 reads as its shortest decimal
        ("40 0f 0b 6d c0", -3.7038),
        ("40 cd cc cc 3d", 0.1),
        ("40 00 00 40 40", 3.0),
        ("40 00 00 00 00", 0.0),
        ("41 00 00 00 00 00 00 08 40", 3.0),
        ("1f 05", 5),  # non-canonical but valid
        ("1f 00", 0),
        ("20", 0),  # "negative zero"
        ("3f 01", -1),
        ("9f 01 61", "a"),
        ("c0", {}),
        ("e0", []),
        ("c2 81 61 01 81 61 02", {"a": 2}),  # duplicate key: last wins
        ("c1 9f 01 61 01", {"a": 1}),  # key with an extended length
        ("e3 62 60 80", [None, False, ""]),
        ("a1 00", b"\x00"),
        ("e3 01 01 01", [1, 1, 1]),  # a count that exactly fits
        ("c1 80 80", {"": ""}),
        ("7f 01", True),  # discrete with an extended number: non-canonical but valid
    ],
)
def test_decoder_values(hexbytes: str, expected: PsonValue) -> None:
    assert typed(pson2.decode(h(hexbytes))) == typed(expected)


def test_float32_infinity_and_nan_are_kept() -> None:
    assert pson2.decode(struct.pack("<Bf", 0x40, float("inf"))) == float("inf")
    nan = pson2.decode(struct.pack("<Bf", 0x40, float("nan")))
    assert isinstance(nan, float) and math.isnan(nan)


@pytest.mark.parametrize(
    "hexbytes",
    [
        "",  # nothing
        "1f",  # truncated varint
        "1f 80",
        "1f 80 80 80 80 80 80 80 80 80 80 01",  # 11-byte varint
        "1f ff ff ff ff ff ff ff ff ff 02",  # 2**64: overflow
        "40 00 00 bc",  # truncated float
        "41 00 00 00 00 00 00 00",  # truncated double
        "42 00 00 00 00",  # float width 2
        "5f 02 00 00 00 00",  # float width 2, extended
        "63",  # discrete 3
        "7e",
        "85 61 62",  # string shorter than declared
        "82 c3 28",  # invalid UTF-8
        "81 ff",
        "c1 82 c3 28 01",  # invalid UTF-8 key
        "c1 01 01",  # key is not a string
        "c1 a1 61 01",  # key is bytes
        "c1 62 01",  # key is null
        "c1 81 61",  # key without value
        "c2 81 61 01",  # second pair missing
        "c1 85 61 01",  # key runs past the end
        "e3 01 02",  # array shorter than declared
        "e1",
        "a5 01",  # bytes shorter than declared
        "bf 80 80 80 80 80 80 80 80 40",  # bytes of length 2**62, no data
        "01 01",  # trailing bytes
        "62 00",
    ],
)
def test_invalid_input_raises_decode_error(hexbytes: str) -> None:
    with pytest.raises(DecodeError):
        pson2.decode(h(hexbytes))


@pytest.mark.parametrize(
    "hexbytes",
    [
        "ff ff ff ff ff ff ff ff ff ff 01",  # array of 2**64-1 items
        "df ff ff ff ff ff ff ff ff ff 01",  # map of 2**64-1 pairs
        "ff ff ff ff ff 0f 01 01 01",  # array of 2**32-1 items, 3 bytes left
        "c3 81 61 01 81 62",  # 3 pairs in 5 bytes (each pair takes 2 at least)
        "e4 01 01 01",  # 4 items in 3 bytes
    ],
)
def test_impossible_counts_are_refused_before_decoding(hexbytes: str) -> None:
    started = time.perf_counter()
    with pytest.raises(DecodeError, match="cannot fit"):
        pson2.decode(h(hexbytes))
    assert time.perf_counter() - started < 1  # nothing was built for the declared count


def nested_arrays(depth: int) -> bytes:
    return b"\xe1" * (depth - 1) + b"\xe0"


def test_max_depth() -> None:
    assert pson2.decode(nested_arrays(32)) is not None
    with pytest.raises(DecodeError):
        pson2.decode(nested_arrays(33))
    assert pson2.decode(h("e2 01 01"), max_depth=1) == [1, 1]
    with pytest.raises(DecodeError):
        pson2.decode(h("e1 e0"), max_depth=1)
    with pytest.raises(DecodeError):
        pson2.decode(h("c1 81 61 c0"), max_depth=1)
    with pytest.raises(DecodeError):
        pson2.decode(h("e0"), max_depth=0)
    assert pson2.decode(h("01"), max_depth=0) == 1


def test_absurd_max_depth_still_raises_only_decode_error() -> None:
    with pytest.raises(DecodeError):
        pson2.decode(nested_arrays(5000), max_depth=10**9)


def test_decode_at_reads_one_value_in_a_window() -> None:
    buf = memoryview(h("ff 82 68 69 01 ff"))
    assert pson2.decode_at(buf, 1, 5) == ("hi", 4)
    assert pson2.decode_at(buf, 4, 5) == (1, 5)
    with pytest.raises(DecodeError):
        pson2.decode_at(buf, 1, 3)  # the window ends inside the string
    with pytest.raises(DecodeError):
        pson2.decode_at(h("e2 01 01"), 0, 2)  # the window ends inside the array


def test_decode_accepts_bytearray_and_memoryview() -> None:
    data = h("c1 83 6f 75 74 40 00 00 bc 41")
    assert pson2.decode(bytearray(data)) == {"out": 23.5}
    assert pson2.decode(memoryview(data)) == {"out": 23.5}
    assert pson2.decode(memoryview(h("e1 01")).cast("H")) == [1]


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
    assert typed(pson2.decode(pson2.encode(value))) == typed(value)


@settings(max_examples=300)
@given(values(scalars | st.floats() | st.floats(width=32)))
def test_round_trip_with_floats_is_stable_after_one_round_trip(value: PsonValue) -> None:
    once = pson2.encode(pson2.decode(pson2.encode(value)))
    assert pson2.encode(pson2.decode(once)) == once


@settings(max_examples=500)
@given(st.floats())
def test_floats_keep_their_value(value: float) -> None:
    encoded = pson2.encode(value)
    decoded = pson2.decode(encoded)
    assert isinstance(decoded, int | float)
    if encoded[0] == pson2.FLOAT32:  # exact float32: the decimal maps back to the same float32
        assert struct.pack("<f", decoded) == encoded[1:]
    elif math.isnan(value):
        assert isinstance(decoded, float) and math.isnan(decoded)
    else:  # integer or double: exact
        assert decoded == value


def test_decoded_float32_reads_as_meant_and_re_encodes_as_double() -> None:
    # 40.4168 held in a C float and widened to double goes out as a float32 ...
    decoded = pson2.decode(h("40 ce aa 21 42"))
    assert decoded == 40.4168
    # ... and reads back as the decimal that was meant, which is not a float32 itself.
    assert pson2.encode(decoded) == h("41 85 7c d0 b3 59 35 44 40")


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        value = pson2.decode(data)
    except DecodeError:
        return
    # Whatever decodes is a PSON value that encodes again.
    pson2.encode(value)


def test_value_model_is_shared_with_pson_v1() -> None:
    value: PsonValue = {"a": [1, -2, "x", b"y", None, True, 2.5, {"b": []}]}
    assert typed(pson2.decode(pson2.encode(value))) == typed(pson.decode(pson.encode(value)))
