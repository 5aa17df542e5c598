"""IOTMP over WebSocket at /iotmp: the same device protocol, in WebSocket frames.

IOTMP-Linux writes its binary IOTMP stream in TEXT frames that are not valid UTF-8, and reads
the server's answers the same way. These tests speak WebSocket by hand over a raw socket (plain
and TLS), so they choose the opcodes and send bytes a conforming library would refuse.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import ssl
import struct

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.config import Settings
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType

from conftest import ADMIN, bearer, create_device, login, wait_offline

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
# stream id 200 is the varint c8 01: a lead byte without its continuation, never valid UTF-8
CONNECT = iotmp.encode(
    Message(MessageType.CONNECT, stream_id=200, payload=[ADMIN, "dev1", "secret1"])
)
CONNECTED = bytes.fromhex("01 03 08 c8 01")  # OK to stream 200


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, tls_self_signed=True)


class RawWebSocket:
    """A WebSocket client written out by hand: frames as given, masked, any opcode."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(
        cls,
        server: Roost,
        scheme: str = "ws",
        path: str = "/iotmp",
        headers: str = "Sec-WebSocket-Protocol: iotmp\r\n",
        version: str = "13",
    ) -> tuple[RawWebSocket, bytes]:
        """Connect and send the upgrade request; the socket and the answer's head."""
        if scheme == "wss":
            cert = server.settings.data_dir / "tls" / "self-signed.crt"
            context = ssl.create_default_context(cafile=str(cert))
            port = server.ports["https"]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="localhost"
            )
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: {version}\r\n{headers}\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        return cls(reader, writer), head

    def send(self, opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> None:
        size = len(payload)
        first = (0x80 if fin else 0) | opcode
        mask_bit = 0x80 if masked else 0
        if size < 126:
            head = bytes((first, mask_bit | size))
        elif size < 65536:
            head = struct.pack("!BBH", first, mask_bit | 126, size)
        else:
            head = struct.pack("!BBQ", first, mask_bit | 127, size)
        if masked:
            key = os.urandom(4)
            payload = key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.writer.write(head + payload)

    async def recv(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload); it must be final and unmasked."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 5)
        assert first & 0x80 and not first & 0x70, "a final frame, no reserved bits"
        assert not second & 0x80, "a server does not mask"
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), 5)

    async def closed(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def let_go(self) -> bool:
        """Whether the server closes the connection within 5 s (a goodbye frame before, or not)."""
        await asyncio.wait_for(self.reader.read(), 5)
        return self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


def test_the_frames_here_are_not_utf8() -> None:
    for payload in (CONNECT, CONNECTED):
        with pytest.raises(UnicodeDecodeError):
            payload.decode()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
async def test_iotmp_in_text_frames_that_are_not_utf8_both_ways(
    server: Roost, http: httpx.AsyncClient, admin_token: str, scheme: str
) -> None:
    await create_device(http, admin_token)
    ws, head = await RawWebSocket.open(server, scheme)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"sec-websocket-protocol: iotmp\r\n" in head.lower()
    ws.send(TEXT, CONNECT)
    assert await ws.recv() == (TEXT, CONNECTED)  # answered in text, not UTF-8 either
    ws.send(TEXT, KEEP_ALIVE_BYTES)
    assert await ws.recv() == (TEXT, KEEP_ALIVE_BYTES)

    call = asyncio.create_task(
        http.get(f"/v2/users/{ADMIN}/devices/dev1/temperature", headers=bearer(admin_token))
    )
    opcode, payload = await ws.recv()
    request = iotmp.Decoder().feed(payload)[0]
    assert (opcode, request.type, request.resource) == (TEXT, MessageType.RUN, "temperature")
    reply = iotmp.encode(Message(MessageType.OK, stream_id=request.stream_id, payload=-21.5))
    ws.send(TEXT, reply)
    assert (await call).json() == {"out": -21.5}
    stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(admin_token))
    assert stats.json()["connected"] is True

    ws.send(CLOSE, struct.pack("!H", 1000))
    assert await ws.recv() == (CLOSE, struct.pack("!H", 1000))  # the close handshake
    assert await ws.closed()
    await wait_offline(http, admin_token, "dev1")


async def test_binary_frames_are_answered_in_binary(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    ws, _ = await RawWebSocket.open(server)
    ws.send(BINARY, CONNECT)
    assert await ws.recv() == (BINARY, CONNECTED)
    ws.send(TEXT, KEEP_ALIVE_BYTES)  # the device switched: so does the server
    assert await ws.recv() == (TEXT, KEEP_ALIVE_BYTES)
    ws.close()


async def test_the_stream_may_be_cut_anywhere_and_pings_come_between(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """A WebSocket message is not an IOTMP message: fragments, split frames, control frames
    between fragments, and several IOTMP messages in one frame all carry the same stream."""
    await create_device(http, admin_token)
    ws, _ = await RawWebSocket.open(server)
    ws.send(TEXT, CONNECT[:3], fin=False)
    ws.send(PING, b"\xff\x00ping")
    ws.send(CONTINUATION, CONNECT[3:7], fin=False)
    ws.send(CONTINUATION, CONNECT[7:])
    assert await ws.recv() == (PONG, b"\xff\x00ping")
    assert await ws.recv() == (TEXT, CONNECTED)
    ws.send(TEXT, KEEP_ALIVE_BYTES * 2 + KEEP_ALIVE_BYTES[:1])
    ws.send(TEXT, KEEP_ALIVE_BYTES[1:])
    assert [await ws.recv() for _ in range(3)] == [(TEXT, KEEP_ALIVE_BYTES)] * 3
    ws.close()


async def test_a_client_that_does_not_mask_is_closed_with_1002(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    ws, _ = await RawWebSocket.open(server)
    ws.send(TEXT, CONNECT, masked=False)
    opcode, payload = await ws.recv()
    assert (opcode, payload[:2]) == (CLOSE, struct.pack("!H", 1002))
    assert await ws.closed()


async def test_bad_credentials_get_an_error_then_a_close(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    ws, _ = await RawWebSocket.open(server)
    bad = Message(MessageType.CONNECT, stream_id=200, payload=[ADMIN, "dev1", "wrong-one"])
    ws.send(TEXT, iotmp.encode(bad))
    assert await ws.recv() == (TEXT, bytes.fromhex("02 03 08 c8 01"))
    assert await ws.recv() == (CLOSE, struct.pack("!H", 1000))
    assert await ws.closed()


async def test_a_silent_connection_is_closed_at_the_auth_timeout(
    settings: Settings, tmp_path: object
) -> None:
    roost = Roost(dataclasses.replace(settings, auth_timeout=0.2))
    await roost.start()
    try:
        ws, head = await RawWebSocket.open(roost)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert await ws.closed()
    finally:
        await roost.stop()


async def test_handshakes_it_cannot_accept_get_a_json_error(server: Roost) -> None:
    ws, head = await RawWebSocket.open(server, version="8")
    assert head.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13\r\n" in head
    body = await ws.reader.read()
    assert body == b'{"error": {"message": "WebSocket version 13 only"}}'
    ws, head = await RawWebSocket.open(server, headers="")  # no subprotocol: accepted, as before
    assert head.startswith(b"HTTP/1.1 101 ") and b"sec-websocket-protocol" not in head.lower()
    ws.close()


async def test_other_websocket_paths_are_left_to_the_api(server: Roost) -> None:
    """uvicorn's own WebSocket protocol still serves the resource streams: without a token,
    the API refuses the handshake with its JSON error."""
    ws, head = await RawWebSocket.open(server, path=f"/v3/users/{ADMIN}/devices/dev1/resources")
    assert head.split(b" ")[1] in (b"401", b"403")
    assert b"content-type: application/json" in head.lower()
    ws.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_client_address_behind_a_proxy(settings: Settings, trusted: bool) -> None:
    proxies = ("127.0.0.1",) if trusted else ()
    roost = Roost(dataclasses.replace(settings, trusted_proxies=proxies))
    await roost.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            token = await login(http)
            await create_device(http, token)
            ws, _ = await RawWebSocket.open(
                roost, headers="Sec-WebSocket-Protocol: iotmp\r\nX-Forwarded-For: 203.0.113.7\r\n"
            )
            ws.send(TEXT, CONNECT)
            assert await ws.recv() == (TEXT, CONNECTED)
            stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(token))
            assert stats.json()["ip_address"] == ("203.0.113.7" if trusted else "127.0.0.1")
            ws.close()
    finally:
        await roost.stop()


async def test_a_websocket_library_client_in_binary(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """A conforming client (the websockets library) works too, in binary messages."""
    await create_device(http, admin_token)
    url = f"ws://127.0.0.1:{server.http_port}/iotmp"
    async with connect(url, subprotocols=["iotmp"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "iotmp"
        await ws.send(CONNECT)
        assert await asyncio.wait_for(ws.recv(), 5) == CONNECTED
        await ws.send(KEEP_ALIVE_BYTES)
        assert await asyncio.wait_for(ws.recv(), 5) == KEEP_ALIVE_BYTES
    await wait_offline(http, admin_token, "dev1")


async def test_stopping_the_server_closes_device_websockets(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Both an authenticated device and one still to authenticate are let go at shutdown: the
    server does not wait for them until its graceful-shutdown timeout."""
    roost = Roost(settings)
    await roost.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            await create_device(http, await login(http))
        device, _ = await RawWebSocket.open(roost)
        device.send(TEXT, CONNECT)
        assert await device.recv() == (TEXT, CONNECTED)
        waiting, _ = await RawWebSocket.open(roost)
    finally:
        await roost.stop()
    assert await device.let_go()
    assert await waiting.recv() == (CLOSE, struct.pack("!H", 1001) + b"server shutting down")
    assert await waiting.let_go()
    assert not [r for r in caplog.records if "graceful shutdown exceeded" in r.getMessage()]


async def test_a_client_that_pings_and_never_reads_is_dropped(settings: Settings) -> None:
    """Pongs are bounded like any device outbox: past outbox_limit_bytes unread, the connection
    goes (here long before its auth timeout)."""
    roost = Roost(dataclasses.replace(settings, outbox_limit_bytes=4096, auth_timeout=60))
    await roost.start()
    try:
        ws, _ = await RawWebSocket.open(roost)
        with pytest.raises(ConnectionError):
            for _ in range(1000):  # 13 MB of pings in all (about 5 MB fill the socket buffers)
                for _ in range(100):
                    ws.send(PING, bytes(125))
                await asyncio.wait_for(ws.writer.drain(), 10)
    finally:
        await roost.stop()
