"""IOTMP framing and messages against the bytes captured from the official IOTMP-Linux client."""

from __future__ import annotations

import ast
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.errors import DecodeError, InvalidInput
from roost.wire import iotmp, pson, pson2
from roost.wire.iotmp import KEEP_ALIVE, Decoder, Message, MessageType, Service
from roost.wire.pson import PsonValue

from vectors import load_frames

T = MessageType


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def typed(value: object) -> object:
    """Comparable form that keeps True apart from 1 and 1.0 apart from 1."""
    if isinstance(value, Message):
        fields = (value.parameters, value.payload, value.resource)
        return ("msg", value.type, value.stream_id, *(typed(v) for v in fields))
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def same(decoded: list[Message], expected: list[Message]) -> bool:
    return [typed(m) for m in decoded] == [typed(m) for m in expected]


# One constant per distinct kind of frame in the captures (protocol.md 9.2).
CONNECT = Message(T.CONNECT, 17767, payload=["alice", "dev1", "secret1"])
CONNECT_OK = Message(T.OK, 17767)
CONNECT_REJECTED = Message(T.ERROR, 17767)
RUN_TEMPERATURE = Message(T.RUN, 1, resource="temperature")
OK_PAYLOAD_FIRST = Message(T.OK, 1, payload=23.5)  # "1a 40 00 00 bc 41 08 01"
DESCRIBE_ALL = Message(T.DESCRIBE, 3)
LISTING: dict[str, PsonValue] = {
    "io": {"fn": 4},
    "location": {"fn": 3},
    "relay": {"fn": 2},
    "reset": {"fn": 1},
    "temperature": {"fn": 3},
}
DESCRIBE_RELAY = Message(T.DESCRIBE, 4, resource="relay")
RUN_WITH_PAYLOAD = Message(T.RUN, 6, payload=True, resource="relay")
RUN_IO = Message(T.RUN, 7, payload={"value1": 3, "value2": 4}, resource="io")
IO_RESULT = Message(T.OK, 7, payload={"mult": 12, "sum": 7})
UNKNOWN_ERROR = Message(T.ERROR, 9)
START_SAMPLED = Message(T.START_STREAM, 10, parameters={"interval": 2000}, resource="temperature")
SAMPLE_10 = Message(T.STREAM_DATA, 10, payload=23.5)
BUCKET_WRITE = Message(T.RUN, parameters="temperature_log", payload=23.5, resource=5)
STOP_10 = Message(T.STOP_STREAM, 10)

# One entry per frame of iotmp_session.json, in order.
SESSION: list[Message] = [
    CONNECT,
    CONNECT_OK,
    RUN_TEMPERATURE,
    OK_PAYLOAD_FIRST,
    Message(T.RUN, 2, resource="location"),
    Message(T.OK, 2, payload={"lat": 40.4168, "lon": -3.7038}),
    DESCRIBE_ALL,
    Message(T.OK, 3, payload=LISTING),
    DESCRIBE_RELAY,
    Message(T.OK, 4, payload={"in": False}),
    Message(T.DESCRIBE, 5, resource="io"),
    Message(T.OK, 5, payload={"in": {"value1": 0, "value2": 0}, "out": {"mult": 0, "sum": 0}}),
    RUN_WITH_PAYLOAD,
    Message(T.OK, 6),
    RUN_IO,
    IO_RESULT,
    Message(T.RUN, 8, resource="reset"),
    Message(T.OK, 8),
    Message(T.RUN, 9, resource="nope"),
    UNKNOWN_ERROR,
    START_SAMPLED,
    Message(T.OK, 10),
    SAMPLE_10,
    SAMPLE_10,
    SAMPLE_10,
    BUCKET_WRITE,
    SAMPLE_10,
    Message(T.START_STREAM, 11, resource="relay"),
    Message(T.OK, 11),
    Message(T.RUN, 12, payload=False, resource="relay"),
    Message(T.STREAM_DATA, 11, payload=True),
    Message(T.OK, 12),
    Message(T.STREAM_DATA, 11, payload=True),  # server -> device: input true
    Message(T.STREAM_DATA, 11, payload=True),  # the device's echo
    SAMPLE_10,
    Message(T.START_STREAM, 13, resource="temperature"),
    Message(T.OK, 13),
    Message(T.STREAM_DATA, 13, payload=23.5),
    Message(T.STREAM_DATA, 13, payload=23.5),  # payload first
    SAMPLE_10,
    BUCKET_WRITE,
    Message(T.STREAM_DATA, 13, payload=23.5),
    SAMPLE_10,
    STOP_10,
    Message(T.OK, 10),
    Message(T.STOP_STREAM, 11),
    Message(T.OK, 11),
    Message(T.STOP_STREAM, 13),
    Message(T.OK, 13),
    BUCKET_WRITE,
]

REJECTED: list[Message] = [CONNECT, CONNECT_REJECTED]


@pytest.fixture(scope="module")
def session_frames() -> list[dict[str, Any]]:
    return load_frames("iotmp_session.json")


@pytest.fixture(scope="module")
def session_stream(session_frames: list[dict[str, Any]]) -> bytes:
    return b"".join(h(f["hex"]) for f in session_frames)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("iotmp_session.json", SESSION), ("iotmp_auth_rejected.json", REJECTED)],
)
def test_every_captured_frame_decodes_and_re_encodes(name: str, expected: list[Message]) -> None:
    frames = load_frames(name)
    assert len(frames) == len(expected)
    for captured, want in zip(frames, expected, strict=True):
        data = h(captured["hex"])
        decoded = Decoder().feed(data)
        assert same(decoded, [want]), captured["note"]
        encoded = iotmp.encode(want)
        if captured["from"] == "server":  # written in field order: byte-exact
            assert encoded == data, captured["note"]
        else:  # the client writes fields in hash-map order: same fields, maybe reordered
            assert len(encoded) == len(data), captured["note"]
            assert same(Decoder().feed(encoded), [want]), captured["note"]


NOTE = re.compile(r"type=(\d+)\(\w+\) size=(\d+)\s+(\{.*\})$")
NOTE_FIELDS = {"params": "parameters"}  # the listener's name for PARAMETERS


def test_device_frames_carry_the_fields_their_notes_list(
    session_frames: list[dict[str, Any]],
) -> None:
    # The capturing listener wrote each device frame's fields down: check them independently.
    device_frames = [f for f in session_frames if f["from"] == "device"]
    assert len(device_frames) == 32
    for captured in device_frames:
        match = NOTE.match(captured["note"])
        assert match is not None, captured["note"]
        kind, size, fields = int(match[1]), int(match[2]), ast.literal_eval(match[3])
        [msg] = Decoder().feed(h(captured["hex"]))
        assert (msg.type, len(h(captured["hex"])) - 2) == (kind, size)
        noted = {NOTE_FIELDS.get(k, k): typed(v) for k, v in fields.items()}
        present = {
            "stream_id": msg.stream_id or None,
            "parameters": msg.parameters,
            "payload": msg.payload,
            "resource": msg.resource,
        }
        actual = {k: typed(v) for k, v in present.items() if v is not None}
        assert actual == noted, captured["note"]


def test_distinct_frames_of_the_capture() -> None:
    connect = "03 19 1a e3 85 61 6c 69 63 65 84 64 65 76 31 87 73 65 63 72 65 74 31 08 e7 8a 01"
    cases: list[tuple[str, Message]] = [
        (connect, CONNECT),
        ("01 04 08 e7 8a 01", CONNECT_OK),
        ("02 04 08 e7 8a 01", CONNECT_REJECTED),
        ("06 0f 08 01 22 8b 74 65 6d 70 65 72 61 74 75 72 65", RUN_TEMPERATURE),
        ("01 08 1a 40 00 00 bc 41 08 01", OK_PAYLOAD_FIRST),
        ("07 02 08 03", DESCRIBE_ALL),
        ("07 09 08 04 22 85 72 65 6c 61 79", DESCRIBE_RELAY),
        ("06 0b 08 06 1a 61 22 85 72 65 6c 61 79", RUN_WITH_PAYLOAD),
        (
            "06 18 08 07 1a c2 86 76 61 6c 75 65 31 03 86 76 61 6c 75 65 32 04 22 82 69 6f",
            RUN_IO,
        ),
        ("01 0f 1a c2 84 6d 75 6c 74 0c 83 73 75 6d 07 08 07", IO_RESULT),
        ("02 02 08 09", UNKNOWN_ERROR),
        (
            "08 1d 08 0a 12 c1 88 69 6e 74 65 72 76 61 6c 1f d0 0f"
            " 22 8b 74 65 6d 70 65 72 61 74 75 72 65",
            START_SAMPLED,
        ),
        ("0a 08 08 0a 1a 40 00 00 bc 41", SAMPLE_10),
        (
            "06 19 1a 40 00 00 bc 41 12 8f 74 65 6d 70 65 72 61 74 75 72 65 5f 6c 6f 67 20 05",
            BUCKET_WRITE,
        ),
        ("09 02 08 0a", STOP_10),
    ]
    for hexbytes, expected in cases:
        assert same(Decoder().feed(h(hexbytes)), [expected]), hexbytes
    assert iotmp.encode(BUCKET_WRITE) == h(
        "06 19 12 8f 74 65 6d 70 65 72 61 74 75 72 65 5f 6c 6f 67 1a 40 00 00 bc 41 20 05"
    )  # RESOURCE 5 as a varint, PARAMETERS a PSON string, in field order


def test_types_decode_as_enum_members(session_stream: bytes) -> None:
    for msg in Decoder().feed(session_stream):
        assert isinstance(msg.type, MessageType)


def test_whole_session_in_one_feed(session_stream: bytes) -> None:
    decoder = Decoder()
    assert same(decoder.feed(session_stream), SESSION)
    assert decoder.buffered == 0


def test_one_byte_at_a_time(session_stream: bytes) -> None:
    decoder = Decoder()
    frames: list[Message] = []
    for i in range(len(session_stream)):
        frames += decoder.feed(session_stream[i : i + 1])
    assert same(frames, SESSION)


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
        assert same(frames, SESSION[:complete])
        assert decoder.buffered == cut - (ends[complete - 1] if complete else 0)


@settings(max_examples=200)
@given(st.data())
def test_any_chunking_decodes_the_same(session_stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(
        data.draw(st.sets(st.integers(1, len(session_stream) - 1), max_size=40), label="cuts")
    )
    decoder = Decoder()
    frames: list[Message] = []
    for start, stop in zip([0, *cuts], [*cuts, len(session_stream)], strict=True):
        frames += decoder.feed(session_stream[start:stop])
    assert same(frames, SESSION)


# -- framing and fields ----------------------------------------------------------------------------


def test_keep_alive() -> None:
    assert h("05 00") == iotmp.KEEP_ALIVE_BYTES
    assert iotmp.encode(KEEP_ALIVE) == h("05 00")
    assert iotmp.encode(Message(T.KEEP_ALIVE)) == h("05 00")
    assert Decoder().feed(h("05 00 05 00")) == [KEEP_ALIVE, KEEP_ALIVE]


def test_empty_message() -> None:
    assert iotmp.encode(Message(T.OK)) == h("01 00")
    assert Decoder().feed(h("01 00")) == [Message(T.OK)]


def test_body_of_128_bytes_or_more_has_a_two_byte_size() -> None:
    msg = Message(T.OK, 5, payload="x" * 200)
    data = iotmp.encode(msg)
    assert data[:3] == h("01 ce 01")  # 206 = 2 (sid) + 1 (key) + 3 (string header) + 200
    assert len(data) == 3 + 206
    assert Decoder().feed(data) == [msg]


@pytest.mark.parametrize(
    ("msg", "hexbytes"),
    [
        (Message(T.RUN, 1, resource=5), "06 04 08 01 20 05"),  # non-negative int: varint
        (Message(T.RUN, parameters=300), "06 03 10 ac 02"),
        (Message(T.OK, payload=0), "01 02 18 00"),
        (Message(T.OK, payload=-3), "01 02 1a 23"),  # negative int: PSON v2
        (Message(T.OK, payload=True), "01 02 1a 61"),  # bool: PSON v2, not a varint
        (Message(T.OK, payload=""), "01 02 1a 80"),
        (Message(T.OK, payload=2**64 - 1), "01 0b 18 ff ff ff ff ff ff ff ff ff 01"),
        (
            Message(T.RUN, 2, parameters={"a": 1}, payload=[1], resource="r"),
            "06 0d 08 02 12 c1 81 61 01 1a e1 01 22 81 72",
        ),
        (Message(T.DISCONNECT), "04 00"),
    ],
)
def test_field_encoding(msg: Message, hexbytes: str) -> None:
    assert iotmp.encode(msg) == h(hexbytes)
    assert same(Decoder().feed(h(hexbytes)), [msg])


@pytest.mark.parametrize(
    "hexbytes",
    [
        "00 00",  # type 0
        "0b 00",  # type 11
        "ff 01 00",
        "81 80 80 80 80 00",  # type varint of 6 bytes
        "01 80 80 80 80 80 00",  # size varint of 6 bytes
        "05 02 08 01",  # keep-alive with a body
        "05 01 00",
        "01 01 08",  # truncated varint field inside the body
        "01 02 0a 01",  # stream id as PSON v2
        "01 02 09 40",  # stream id as PSON v1
        "01 02 1a 9f",  # PSON v2 value cut at the body end
        "01 03 1a 82 61",  # string runs past the body
        "01 03 1a 01 01",  # trailing byte: field 0, wire 1, no value
        "01 01 80",  # key cut at the body end
        "01 01 0b",  # wire 3
        "01 01 0c",  # wire 4
        "01 02 0d 00",  # wire 5
        "01 02 1e 28",  # wire 6 (the legacy protocol's PSON)
        "01 01 0f",  # wire 7
        "01 02 1a 42",  # unknown PSON v2 float width
        "01 02 19 18",  # unknown PSON v1 tag
        "01 04 22 c1 01 01",  # map key that is not a string
        "01 04 12 e3 01 01",  # array shorter than its count
        "01 0b 18 ff ff ff ff ff ff ff ff ff 02",  # varint field above 2**64-1
        "01 03 2a e2 01",  # unknown field with a truncated value
    ],
)
def test_malformed_frames_raise_decode_error(hexbytes: str) -> None:
    with pytest.raises(DecodeError):
        Decoder().feed(h(hexbytes))


def test_unknown_fields_are_skipped_and_fields_may_come_in_any_order() -> None:
    body = (
        h("22 81 61")  # resource "a"
        + h("28 05")  # field 5, varint
        + h("1a c1 82 69 6e 61")  # payload {"in": true}
        + h("31 4a 01 78")  # field 6, PSON v1 "x"
        + h("3a e2 01 80")  # field 7, PSON v2 [1, ""]
        + h("12 81 62")  # parameters "b"
        + h("7a c0")  # field 15, PSON v2 {}
        + h("02 c0")  # field 0, PSON v2 {}
        + h("08 07")  # stream id
    )
    frame = h("0a") + bytes([len(body)]) + body
    expected = Message(T.STREAM_DATA, 7, parameters="b", payload={"in": True}, resource="a")
    assert same(Decoder().feed(frame), [expected])


@pytest.mark.parametrize(
    ("wire", "value_bytes", "value"),
    [
        (0, "05", 5),  # varint
        (0, "ac 02", 300),
        (1, "4a 01 61", "a"),  # PSON v1
        (1, "1d 00 00 bc 41", 23.5),
        (1, "72 04 40 4a 01 61", [1, "a"]),
        (2, "81 61", "a"),  # PSON v2
        (2, "e2 01 81 61", [1, "a"]),
    ],
)
@pytest.mark.parametrize("field", ["parameters", "payload", "resource"])
def test_every_value_field_takes_every_wire_type(
    field: str, wire: int, value_bytes: str, value: PsonValue
) -> None:
    number = {"parameters": 2, "payload": 3, "resource": 4}[field]
    body = bytes([number << 3 | wire]) + h(value_bytes)
    frame = bytes([T.RUN, len(body)]) + body
    expected = Message(T.RUN, **{field: value})  # type: ignore[arg-type]
    assert same(Decoder().feed(frame), [expected])


def test_ie_layout_of_a_bucket_write_decodes() -> None:
    # IOTMP-Embedded / -Arduino: PARAMETERS = service id (varint), RESOURCE = the bucket.
    frame = h("06 19 10 05 22 8f 74 65 6d 70 65 72 61 74 75 72 65 5f 6c 6f 67 1a 40 00 00 bc 41")
    expected = Message(T.RUN, parameters=5, payload=23.5, resource="temperature_log")
    assert same(Decoder().feed(frame), [expected])
    assert Service(5) is Service.WRITE_BUCKET
    assert same(Decoder().feed(iotmp.encode(expected)), [expected])


def test_pson_v1_fields_of_older_clients_decode() -> None:
    # IL25: CONNECT with PARAMETERS = varint 1 and the credentials as a PSON v1 array (wire 1).
    credentials = "72 16 4a 05 61 6c 69 63 65 4a 04 64 65 76 31 4a 07 73 65 63 72 65 74 31"
    body = h("08 e7 8a 01 10 01 19 " + credentials)
    frame = bytes([T.CONNECT, len(body)]) + body
    expected = Message(T.CONNECT, 17767, parameters=1, payload=["alice", "dev1", "secret1"])
    assert same(Decoder().feed(frame), [expected])
    # DESCRIBE with a PSON v1 resource string, and a PSON v1 float payload.
    assert same(
        Decoder().feed(h("07 0a 08 04 21 4a 05 72 65 6c 61 79")),
        [Message(T.DESCRIBE, 4, resource="relay")],
    )
    assert same(
        Decoder().feed(h("01 08 08 01 19 1d 00 00 bc 41")), [Message(T.OK, 1, payload=23.5)]
    )


def test_float_fields_go_as_pson() -> None:
    assert iotmp.encode(Message(T.OK, payload=3.0)) == h("01 02 1a 03")  # integral: an integer
    assert iotmp.encode(Message(T.OK, payload=23.5)) == h("01 06 1a 40 00 00 bc 41")


def test_repeated_field_last_wins() -> None:
    assert Decoder().feed(h("01 04 08 01 08 02")) == [Message(T.OK, stream_id=2)]
    assert Decoder().feed(h("01 04 18 01 1a 62")) == [Message(T.OK)]  # null reads as absent


def test_large_stream_ids_are_kept() -> None:
    [msg] = Decoder().feed(h("01 04 08 80 80 04"))
    assert msg == Message(T.OK, stream_id=65536)
    assert iotmp.encode(msg) == h("01 04 08 80 80 04")
    big = Message(T.OK, stream_id=2**64 - 1)
    assert Decoder().feed(iotmp.encode(big)) == [big]


def test_declared_size_above_max_frame_is_rejected_before_the_body() -> None:
    assert Decoder(max_frame=65536).feed(h("01 80 80 04")) == []  # exactly 65536: waits
    with pytest.raises(DecodeError):
        Decoder(max_frame=65536).feed(h("01 81 80 04"))  # 65537, header only
    with pytest.raises(DecodeError):
        Decoder().feed(h("06 ff ff ff ff 0f"))  # 4 GiB declared, nothing else sent


def test_small_max_frame() -> None:
    msg = Message(T.OK, 1, payload="abcdef")
    data = iotmp.encode(msg)  # body 10 bytes
    assert Decoder(max_frame=10).feed(data) == [msg]
    with pytest.raises(DecodeError):
        Decoder(max_frame=9).feed(data)


def test_max_depth_is_enforced_in_fields() -> None:
    two = iotmp.encode(Message(T.OK, 1, payload=[[1]]))
    three = iotmp.encode(Message(T.OK, 1, payload=[[[1]]]))
    assert Decoder(max_depth=2).feed(two) == [Message(T.OK, 1, payload=[[1]])]
    with pytest.raises(DecodeError):
        Decoder(max_depth=2).feed(three)
    with pytest.raises(DecodeError):
        Decoder(max_depth=1).feed(iotmp.encode(Message(T.RUN, resource=[["a"]])))
    with pytest.raises(DecodeError):  # PSON v1 fields too: [[1]] with one level allowed
        Decoder(max_depth=1).feed(h("01 06 19 72 03 72 01 40"))


def test_decoder_is_poisoned_after_an_error(session_stream: bytes) -> None:
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.feed(h("0b 00"))
    with pytest.raises(DecodeError):
        decoder.feed(session_stream)
    with pytest.raises(DecodeError):
        decoder.feed(b"")


def test_frames_before_an_error_in_the_same_feed_are_dropped() -> None:
    decoder = Decoder()
    with pytest.raises(DecodeError):
        decoder.feed(h("05 00 01 00 00 00"))
    assert decoder.buffered == 0


def test_decode_message_reads_one_body() -> None:
    body = h("08 01 22 8b 74 65 6d 70 65 72 61 74 75 72 65")
    assert iotmp.decode_message(T.RUN, body) == RUN_TEMPERATURE
    with pytest.raises(DecodeError):
        iotmp.decode_message(T.RUN, body[:-1])
    with pytest.raises(DecodeError):
        iotmp.decode_message(11, b"")


@pytest.mark.parametrize(
    "msg",
    [
        Message(0),
        Message(11),
        Message(True),
        Message(1.0),  # type: ignore[arg-type]
        Message(T.OK, stream_id=-1),
        Message(T.OK, stream_id=2**64),
        Message(T.OK, payload=object()),  # type: ignore[arg-type]
        Message(T.OK, payload=2**64),
        Message(T.RUN, resource=[{1: 2}]),  # type: ignore[dict-item]
        Message(T.KEEP_ALIVE, stream_id=1),
        Message(T.KEEP_ALIVE, payload=1),
        "not a message",
    ],
)
def test_unencodable_messages_raise_invalid_input(msg: Message) -> None:
    with pytest.raises(InvalidInput):
        iotmp.encode(msg)


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
    type=st.sampled_from([t for t in MessageType if t is not T.KEEP_ALIVE]),
    stream_id=st.integers(0, MAX),
    parameters=pson_values,
    payload=pson_values,
    resource=pson_values,
)


@settings(max_examples=300)
@given(st.lists(messages | st.just(KEEP_ALIVE), max_size=5))
def test_message_round_trip(msgs: list[Message]) -> None:
    data = b"".join(iotmp.encode(m) for m in msgs)
    decoded = Decoder(max_frame=1 << 20).feed(data)
    assert same(decoded, msgs)
    assert b"".join(iotmp.encode(m) for m in decoded) == data


@settings(max_examples=300)
@given(messages, st.floats() | st.floats(width=32))
def test_message_with_float_is_stable_after_one_round_trip(msg: Message, number: float) -> None:
    first = iotmp.encode(Message(msg.type, msg.stream_id, payload={"v": number}))
    [decoded] = Decoder().feed(first)
    again = iotmp.encode(decoded)
    [decoded_again] = Decoder().feed(again)
    assert iotmp.encode(decoded_again) == again


@settings(max_examples=1000)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_random_bytes_raise_only_decode_error(chunks: list[bytes]) -> None:
    decoder = Decoder(max_frame=1024)
    try:
        for chunk in chunks:
            for msg in decoder.feed(chunk):
                assert isinstance(msg, Message) and isinstance(msg.type, MessageType)
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


def test_pson_modules_and_message_share_the_encoding() -> None:
    value: dict[str, PsonValue] = {"lat": 40.4168, "lon": -3.7038}
    assert iotmp.encode(Message(T.OK, 2, payload=value)).endswith(pson2.encode(value))
    v1 = pson.encode(value)
    frame = bytes([T.OK, len(v1) + 1, 0x19]) + v1
    assert same(Decoder().feed(frame), [Message(T.OK, payload=value)])


@settings(max_examples=300)
@given(
    st.sampled_from([t for t in MessageType if t != MessageType.KEEP_ALIVE]),
    st.integers(0, 0xFFFF),
    st.none() | st.fixed_dictionaries({"interval": st.integers(0, 10**6)}),
    st.none() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False) | st.text(),
    st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4).map(tuple),
)
def test_encode_request_is_encode_of_the_message(
    kind: MessageType,
    stream_id: int,
    parameters: PsonValue,
    payload: PsonValue,
    path: tuple[str, ...],
) -> None:
    message = Message(kind, stream_id, parameters, payload)
    expected = iotmp.encode(message._replace(resource="/".join(path)))
    assert iotmp.encode_request(message, iotmp.resource_field(path)) == expected
