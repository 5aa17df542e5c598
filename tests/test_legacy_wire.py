"""Legacy framing and messages against the bytes captured from the official Linux client."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.errors import DecodeError, InvalidInput
from roost.wire import legacy, pson
from roost.wire.legacy import KEEP_ALIVE, Decoder, Frame, KeepAlive, Message, Signal
from roost.wire.pson import PsonValue

from vectors import load_frames

S = Signal
KA = KEEP_ALIVE


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def typed(value: object) -> object:
    """Comparable form that keeps True apart from 1 and 1.0 apart from 1."""
    if isinstance(value, Message):
        return ("msg", value.stream_id, value.signal, *(typed(v) for v in value_fields(value)))
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def value_fields(msg: Message) -> tuple[PsonValue, PsonValue, PsonValue]:
    return msg.identifier, msg.resource, msg.payload


TEMPERATURE: list[PsonValue] = ["temperature"]
RELAY: list[PsonValue] = ["relay"]
BUCKET = Message(signal=S.BUCKET_DATA, identifier="temperature_log", payload=23.5)
SAMPLE_10 = Message(10, S.STREAM_SAMPLE, payload={"out": 23.5})
EVENT_10 = Message(10, S.STREAM_EVENT, payload={"out": 23.5})
API: dict[str, PsonValue] = {
    "temperature": {"al": 0, "fn": 3},
    "location": {"al": 0, "fn": 3},
    "relay": {"al": 0, "fn": 2},
    "io": {"al": 0, "fn": 4},
    "reset": {"al": 0, "fn": 1},
}

# One entry per frame of legacy_session.json, in order.
SESSION: list[Frame] = [
    Message(signal=S.AUTH, resource=["alice", "dev1", "secret1"]),
    Message(signal=S.REQUEST_OK),
    KA,
    KA,
    BUCKET,
    Message(1, resource=TEMPERATURE),
    Message(1, S.REQUEST_OK, payload=23.5),
    Message(2, resource=["location"]),
    Message(2, S.REQUEST_OK, payload={"lat": 40.4168, "lon": -3.7038}),
    Message(3, resource=["api"]),
    Message(3, S.REQUEST_OK, payload=API),
    Message(4, resource=["relay", "api"]),
    Message(4, S.REQUEST_OK, payload={"in": False}),
    Message(5, resource=["io", "api"]),
    Message(
        5,
        S.REQUEST_OK,
        payload={"out": {"sum": 0, "mult": 0}, "in": {"value1": 0, "value2": 0}},
    ),
    Message(6, resource=RELAY, payload=True),
    Message(6, S.REQUEST_OK),
    Message(7, resource=["io"], payload={"value1": 3, "value2": 4}),
    Message(7, S.REQUEST_OK, payload={"sum": 7, "mult": 12}),
    Message(8, resource=["reset"]),
    Message(8, S.REQUEST_OK),
    Message(9, resource=["nope"]),
    Message(9, S.REQUEST_ERROR),
    Message(10, S.START_STREAM, resource=TEMPERATURE, payload=2000),
    Message(10, S.REQUEST_OK),
    SAMPLE_10,
    SAMPLE_10,
    EVENT_10,
    SAMPLE_10,
    BUCKET,
    Message(11, S.START_STREAM, resource=RELAY),
    Message(11, S.REQUEST_OK),
    Message(12, resource=RELAY, payload=False),
    Message(11, S.STREAM_EVENT, payload={"in": True}),
    Message(12, S.REQUEST_OK),
    Message(11, S.STREAM_EVENT, payload={"in": False}),
    SAMPLE_10,
    Message(10, S.STOP_STREAM, resource=TEMPERATURE),
    EVENT_10,
    Message(10, S.REQUEST_OK),
    Message(11, S.STOP_STREAM, resource=RELAY),
    Message(11, S.REQUEST_OK),
    BUCKET,
]

REJECTED: list[Frame] = [
    Message(signal=S.AUTH, resource=["alice", "dev1", "secret1"]),
    Message(signal=S.REQUEST_ERROR),
]


@pytest.fixture(scope="module")
def session_frames() -> list[dict[str, Any]]:
    return load_frames("legacy_session.json")


@pytest.fixture(scope="module")
def session_stream(session_frames: list[dict[str, Any]]) -> bytes:
    return b"".join(h(f["hex"]) for f in session_frames)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("legacy_session.json", SESSION), ("legacy_auth_rejected.json", REJECTED)],
)
def test_every_captured_frame_decodes_and_re_encodes(name: str, expected: list[Frame]) -> None:
    frames = load_frames(name)
    assert len(frames) == len(expected)
    for captured, want in zip(frames, expected, strict=True):
        data = h(captured["hex"])
        decoded = Decoder().feed(data)
        assert [typed(f) for f in decoded] == [typed(want)], captured["note"]
        assert legacy.encode(want) == data, captured["note"]


def test_signals_decode_as_enum_members(session_stream: bytes) -> None:
    for frame in Decoder().feed(session_stream):
        if isinstance(frame, Message) and frame.signal:
            assert isinstance(frame.signal, Signal)


def test_whole_session_in_one_feed(session_stream: bytes) -> None:
    decoder = Decoder()
    assert [typed(f) for f in decoder.feed(session_stream)] == [typed(f) for f in SESSION]
    assert decoder.buffered == 0


def test_one_byte_at_a_time(session_stream: bytes) -> None:
    decoder = Decoder()
    frames: list[Frame] = []
    for i in range(len(session_stream)):
        frames += decoder.feed(session_stream[i : i + 1])
    assert frames == SESSION


def test_every_truncation_gives_a_prefix_of_complete_frames(
    session_frames: list[dict[str, Any]], session_stream: bytes
) -> None:
    ends = []
    total = 0
    for f in session_frames:
        total += len(h(f["hex"]))
        ends.append(total)
    for cut in range(len(session_stream) + 1):
        decoder = Decoder()
        frames = decoder.feed(session_stream[:cut])
        complete = sum(1 for end in ends if end <= cut)
        assert frames == SESSION[:complete]
        assert decoder.buffered == cut - (ends[complete - 1] if complete else 0)


@settings(max_examples=200)
@given(st.data())
def test_any_chunking_decodes_the_same(session_stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(
        data.draw(st.sets(st.integers(1, len(session_stream) - 1), max_size=40), label="cuts")
    )
    decoder = Decoder()
    frames: list[Frame] = []
    for start, stop in zip([0, *cuts], [*cuts, len(session_stream)], strict=True):
        frames += decoder.feed(session_stream[start:stop])
    assert frames == SESSION


# -- framing ---------------------------------------------------------------------------------------


def test_keep_alive() -> None:
    assert h("02 00") == legacy.KEEP_ALIVE_BYTES
    assert legacy.encode(KEEP_ALIVE) == h("02 00")
    assert legacy.encode(KeepAlive()) == h("02 00")
    assert Decoder().feed(h("02 00 02 00")) == [KeepAlive(), KeepAlive()]


def test_empty_message() -> None:
    assert legacy.encode(Message()) == h("01 00")
    assert Decoder().feed(h("01 00")) == [Message()]


def test_body_of_128_bytes_or_more_has_a_two_byte_size() -> None:
    msg = Message(5, S.REQUEST_OK, payload="x" * 200)
    data = legacy.encode(msg)
    assert data[:3] == h("01 d0 01")  # 208 = 2 (sid) + 2 (flag) + 1 (tag) + 3 + 200
    assert len(data) == 3 + 208
    assert Decoder().feed(data) == [msg]


@pytest.mark.parametrize(
    "hexbytes",
    [
        "02 01 00",  # keep-alive with a body
        "00 00",  # type 0
        "03 00",  # unknown type
        "81 80 80 80 80 00",  # type varint of 6 bytes
        "01 80 80 80 80 80 00",  # size varint of 6 bytes
        "01 01 08",  # truncated varint field inside the body
        "01 02 36 4a",  # PSON value runs past the body
        "01 03 36 40 40",  # trailing garbage after the payload
        "01 01 80",  # tag cut at the body end
        "01 02 0e 40",  # field 1 as a PSON value
        "01 02 30 05",  # field 6 as a varint
        "01 02 1a 00",  # field 3 length-delimited
        "01 01 2b",  # wire type 3 (group)
        "01 01 2c",  # wire type 4
        "01 02 2f 00",  # wire type 7
        "01 03 2a 05 00",  # length-delimited unknown field past the end
        "01 04 29 00 00 00",  # fixed64 past the end
        "01 03 2d 00 00",  # fixed32 past the end
        "01 02 36 18",  # unknown PSON type
    ],
)
def test_malformed_frames_raise_decode_error(hexbytes: str) -> None:
    with pytest.raises(DecodeError):
        Decoder().feed(h(hexbytes))


def test_unknown_fields_are_skipped_and_fields_may_come_in_any_order() -> None:
    body = (
        h("36 6a 04 02 69 6e 28")  # payload {"in": true}
        + h("28 05")  # field 5, varint
        + h("39 01 02 03 04 05 06 07 08")  # field 7, fixed64
        + h("42 02 aa bb")  # field 8, length-delimited
        + h("4d 01 02 03 04")  # field 9, fixed32
        + h("56 72 02 40 40")  # field 10, a PSON value
        + h("26 72 03 4a 01 61")  # resource ["a"]
        + h("10 06")  # signal
        + h("1e 4a 01 62")  # identifier "b"
        + h("08 07")  # stream id
    )
    frame = h("01") + bytes([len(body)]) + body
    expected = Message(7, S.STREAM_EVENT, identifier="b", resource=["a"], payload={"in": True})
    assert Decoder().feed(frame) == [expected]


def test_repeated_field_last_wins() -> None:
    assert Decoder().feed(h("01 04 08 01 08 02")) == [Message(stream_id=2)]


def test_large_stream_id_and_unknown_signal_are_kept() -> None:
    [msg] = Decoder().feed(h("01 06 08 80 80 04 10 63"))
    assert msg == Message(stream_id=65536, signal=99)
    assert isinstance(msg, Message) and type(msg.signal) is int
    assert legacy.encode(msg) == h("01 06 08 80 80 04 10 63")


def test_declared_size_above_max_frame_is_rejected_before_the_body() -> None:
    decoder = Decoder(max_frame=65536)
    assert decoder.feed(h("01 80 80 04")) == []  # exactly 65536: waits for the body
    with pytest.raises(DecodeError):
        Decoder(max_frame=65536).feed(h("01 81 80 04"))  # 65537, header only
    with pytest.raises(DecodeError):
        Decoder().feed(h("01 ff ff ff ff 0f"))  # 4 GiB declared, nothing else sent


def test_small_max_frame() -> None:
    msg = legacy.encode(Message(1, S.REQUEST_OK, payload="abcdef"))  # body 13 bytes
    assert Decoder(max_frame=13).feed(msg) == [Message(1, S.REQUEST_OK, payload="abcdef")]
    with pytest.raises(DecodeError):
        Decoder(max_frame=12).feed(msg)


def test_max_depth_is_enforced_in_message_fields() -> None:
    two = legacy.encode(Message(1, payload=[[1]]))
    three = legacy.encode(Message(1, payload=[[[1]]]))
    assert Decoder(max_depth=2).feed(two) == [Message(1, payload=[[1]])]
    with pytest.raises(DecodeError):
        Decoder(max_depth=2).feed(three)
    with pytest.raises(DecodeError):
        Decoder(max_depth=1).feed(legacy.encode(Message(1, resource=[["a"]])))


def test_decoder_is_poisoned_after_an_error(session_stream: bytes) -> None:
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.feed(h("03 00"))
    with pytest.raises(DecodeError):
        decoder.feed(session_stream)
    with pytest.raises(DecodeError):
        decoder.feed(b"")


def test_decode_message_reads_one_body() -> None:
    body = h("08 01 26 72 0d 4a 0b 74 65 6d 70 65 72 61 74 75 72 65")
    assert legacy.decode_message(body) == Message(1, resource=["temperature"])
    with pytest.raises(DecodeError):
        legacy.decode_message(body[:-1])


@pytest.mark.parametrize(
    "frame",
    [
        Message(stream_id=-1),
        Message(signal=-5),
        Message(stream_id=2**64),
        Message(payload=object()),  # type: ignore[arg-type]
        Message(resource=[{1: 2}]),  # type: ignore[dict-item]
        "not a frame",
    ],
)
def test_unencodable_frames_raise_invalid_input(frame: Frame) -> None:
    with pytest.raises(InvalidInput):
        legacy.encode(frame)


# -- properties ------------------------------------------------------------------------------------

MAX = 2**64 - 1
pson_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX, max_value=MAX)
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
messages = st.builds(
    Message,
    stream_id=st.integers(0, MAX),
    signal=st.integers(0, 2**32),
    identifier=pson_values,
    resource=pson_values,
    payload=pson_values,
)


@settings(max_examples=300)
@given(st.lists(messages | st.just(KEEP_ALIVE), max_size=5))
def test_message_round_trip(frames: list[Frame]) -> None:
    data = b"".join(legacy.encode(f) for f in frames)
    decoded = Decoder(max_frame=1 << 20).feed(data)
    assert [typed(f) for f in decoded] == [typed(f) for f in frames]
    assert b"".join(legacy.encode(f) for f in decoded) == data


@settings(max_examples=300)
@given(messages, st.floats() | st.floats(width=32))
def test_message_with_float_is_stable_after_one_round_trip(msg: Message, number: float) -> None:
    first = legacy.encode(Message(msg.stream_id, msg.signal, payload={"v": number}))
    [decoded] = Decoder().feed(first)
    again = legacy.encode(decoded)
    [decoded_again] = Decoder().feed(again)
    assert legacy.encode(decoded_again) == again


@settings(max_examples=1000)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_random_bytes_raise_only_decode_error(chunks: list[bytes]) -> None:
    decoder = Decoder(max_frame=1024)
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert isinstance(frame, Message | KeepAlive)
    except DecodeError:
        return


@settings(max_examples=500)
@given(st.data())
def test_corrupted_session_raises_only_decode_error(
    session_stream: bytes, data: st.DataObject
) -> None:
    corrupted = bytearray(session_stream)
    for _ in range(data.draw(st.integers(1, 8))):
        corrupted[data.draw(st.integers(0, len(corrupted) - 1))] = data.draw(st.integers(0, 255))
    try:
        Decoder().feed(bytes(corrupted))
    except DecodeError:
        return


def test_pson_module_and_message_share_the_encoding() -> None:
    value: dict[str, PsonValue] = {"lat": 40.4168, "lon": -3.7038}
    assert legacy.encode(Message(2, S.REQUEST_OK, payload=value)).endswith(pson.encode(value))


@settings(max_examples=300)
@given(
    st.integers(0, 0xFFFF),
    st.sampled_from([0, *Signal]),
    st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4).map(tuple),
    st.none() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(),
)
def test_encode_request_is_encode_of_the_message(
    stream_id: int, signal: int, path: tuple[str, ...], payload: PsonValue
) -> None:
    message = Message(stream_id=stream_id, signal=signal, payload=payload)
    expected = legacy.encode(message._replace(resource=list(path)))
    assert legacy.encode_request(message, legacy.resource_field(path)) == expected
