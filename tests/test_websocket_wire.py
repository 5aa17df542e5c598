"""The sans-IO WebSocket codec (roost.wire.websocket): RFC 6455 vectors, payloads as bytes
whatever the opcode, any chunking, and nothing but DecodeError from hostile bytes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roost.errors import DecodeError
from roost.wire import websocket
from roost.wire.websocket import Close, Data, Decoder, Opcode, Ping, Pong

KEY = b"\x37\xfa\x21\x3d"


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    frame = websocket.encode_frame(opcode, payload, mask=KEY)
    return frame if fin else bytes((frame[0] & 0x7F,)) + frame[1:]


def joined(events: list[websocket.Event]) -> list[websocket.Event]:
    """Adjacent data chunks of the same kind as one (how a feed splits them is free)."""
    out: list[websocket.Event] = []
    for event in events:
        last = out[-1] if out else None
        if isinstance(event, Data) and isinstance(last, Data) and last.text == event.text:
            out[-1] = Data(last.payload + event.payload, event.text)
        elif not (isinstance(event, Data) and not event.payload):
            out.append(event)
    return out


def test_rfc6455_vectors() -> None:
    # 5.7: a single-frame masked text message "Hello", and the unmasked one a server sends
    assert Decoder().feed(bytes.fromhex("818537fa213d7f9f4d5158")) == [Data(b"Hello", True)]
    assert websocket.encode_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert masked(Opcode.TEXT, b"Hello") == bytes.fromhex("818537fa213d7f9f4d5158")
    # 5.7: 256 and 65536 bytes take the 16- and 64-bit lengths
    assert websocket.encode_frame(Opcode.BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert websocket.encode_frame(Opcode.BINARY, bytes(65536))[:10] == bytes.fromhex(
        "827f0000000000010000"
    )
    # 1.3: the accept key
    assert websocket.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_text_frames_are_bytes_even_when_not_utf8() -> None:
    payload = b"\x03\x0e\x08\xc8\x01\xff\xfe"
    assert Decoder().feed(masked(Opcode.TEXT, payload)) == [Data(payload, True)]
    assert Decoder().feed(masked(Opcode.BINARY, payload)) == [Data(payload, False)]


def test_fragments_with_a_ping_between() -> None:
    stream = (
        masked(Opcode.TEXT, b"ab", fin=False)
        + masked(Opcode.PING, b"p")
        + masked(Opcode.CONTINUATION, b"cd")
        + masked(Opcode.PONG, b"")
        + masked(Opcode.BINARY, b"e")
    )
    assert Decoder().feed(stream) == [
        Data(b"ab", True),
        Ping(b"p"),
        Data(b"cd", True),
        Pong(b""),
        Data(b"e", False),
    ]


def test_close_and_what_follows_it() -> None:
    decoder = Decoder()
    stream = websocket.encode_close(1001, "bye", mask=KEY) + masked(Opcode.TEXT, b"late")
    assert decoder.feed(stream) == [Close(1001, b"bye")]
    assert decoder.feed(masked(Opcode.TEXT, b"later")) == []  # ignored after a CLOSE
    assert Decoder().feed(websocket.encode_close(None, mask=KEY)) == [Close(None, b"")]
    assert websocket.encode_close(1000) == bytes.fromhex("880203e8")


def test_a_declared_length_allocates_nothing() -> None:
    """A frame announcing 2**62 bytes is passed on as its bytes come, not awaited whole."""
    head = struct.pack("!BBQ", 0x82, 0xFF, 1 << 62) + KEY
    decoder = Decoder()
    assert decoder.feed(head) == []
    assert decoder.feed(bytes(8)) == [Data(websocket.unmask(bytes(8), KEY), False)]


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (websocket.encode_frame(Opcode.TEXT, b"x"), "not masked"),
        (bytes((0xC1,)) + masked(Opcode.TEXT, b"x")[1:], "reserved bits"),
        (masked(0x3, b"x"), "unknown opcode"),
        (masked(0xB, b""), "unknown opcode"),
        (masked(Opcode.CONTINUATION, b"x"), "outside a fragmented message"),
        (masked(Opcode.TEXT, b"a", fin=False) + masked(Opcode.BINARY, b"b"), "inside a frag"),
        (masked(Opcode.PING, b"x", fin=False), "fragmented control frame"),
        (masked(Opcode.PING, bytes(126)), "control frame of 126 bytes"),
        (masked(Opcode.CLOSE, b"\x03"), "1-byte body"),
        (struct.pack("!BBQ", 0x82, 0xFF, 1 << 63), "most significant bit"),
    ],
)
def test_protocol_errors(frame: bytes, why: str) -> None:
    decoder = Decoder()
    with pytest.raises(DecodeError, match=why):
        decoder.feed(frame)
    with pytest.raises(DecodeError, match="earlier error"):
        decoder.feed(masked(Opcode.TEXT, b"x"))


def test_an_oversized_control_frame_is_refused_before_its_payload() -> None:
    with pytest.raises(DecodeError, match="control frame"):
        Decoder().feed(bytes((0x89, 0xFE, 0x10, 0x00)))  # a ping of 4096, header only


def request(*lines: str, method: str = "GET", path: str = "/iotmp?x=1") -> bytes:
    base = [
        "Host: h",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    return (
        f"{method} {path} HTTP/1.1\r\n"
        + "".join(f"{line}\r\n" for line in base + list(lines))
        + "\r\n"
    ).encode()


def test_handshake_answer() -> None:
    parsed = websocket.handshake(request("Sec-WebSocket-Protocol: chat, iotmp"))
    assert parsed.path == b"/iotmp"
    answer = websocket.answer(parsed, b"iotmp")
    assert answer.accepted
    assert answer.data == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"sec-websocket-protocol: iotmp\r\n\r\n"
    )
    plain = websocket.answer(websocket.handshake(request()), b"iotmp")
    assert plain.accepted and b"sec-websocket-protocol" not in plain.data


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (request(method="POST"), b"400"),
        (request().replace(b"Version: 13", b"Version: 8"), b"426"),
        (request().replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), b"400"),
        (request().replace(b"Upgrade: websocket", b"Upgrade: h2c"), b"400"),
    ],
)
def test_handshake_refusals_are_json_errors(head: bytes, status: bytes) -> None:
    answer = websocket.answer(websocket.handshake(head), b"iotmp")
    assert not answer.accepted and answer.reason
    assert answer.data.split(b" ")[1] == status
    assert answer.data.endswith(b'{"error": {"message": "%s"}}' % answer.reason.encode())


def test_malformed_heads() -> None:
    for head in (b"GET /iotmp\r\n\r\n", b"GET / HTTP/1.1\r\nno colon\r\n\r\n", bytes(20000)):
        with pytest.raises(DecodeError):
            websocket.handshake(head)


frames = st.lists(
    st.tuples(st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING]), st.binary(max_size=300)),
    max_size=8,
)


@settings(max_examples=300)
@given(frames, st.data())
def test_any_chunking_decodes_the_same(
    messages: list[tuple[Opcode, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(
        masked(op, payload if op != Opcode.PING else payload[:125]) for op, payload in messages
    )
    whole = Decoder().feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = Decoder()
    pieces: list[websocket.Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        pieces += decoder.feed(stream[start:end])
    assert joined(pieces) == joined(whole)
    expected: list[websocket.Event] = [
        Ping(p[:125]) if op == Opcode.PING else Data(p, op == Opcode.TEXT) for op, p in messages
    ]
    assert joined(whole) == joined(expected)


@settings(max_examples=1000)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_decode_error(stream: bytes) -> None:
    with contextlib.suppress(DecodeError):
        Decoder().feed(stream)
    with contextlib.suppress(DecodeError):
        websocket.answer(websocket.handshake(stream), b"iotmp")


@given(st.binary(max_size=64), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_unmask_is_xor_with_the_key_from_an_offset(data: bytes, key: bytes, offset: int) -> None:
    expected = bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))
    assert websocket.unmask(data, key, offset) == expected
