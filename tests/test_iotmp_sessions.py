"""The IOTMP listener over raw sockets: CONNECT, keep-alive, DISCONNECT, services, bad frames."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from roost.app import Roost
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType, Service

from conftest import ADMIN, bearer, create_device, wait_for


async def open_device(server: Roost) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.iotmp_port)


def connect_frame(credentials: str = "secret1") -> bytes:
    return iotmp.encode(
        Message(MessageType.CONNECT, stream_id=17767, payload=[ADMIN, "dev1", credentials])
    )


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), 5):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
async def registered(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token)


async def test_connect_ok_echoes_the_stream_id_and_keepalives_echo(
    server: Roost, registered: None
) -> None:
    reader, writer = await open_device(server)
    writer.write(connect_frame())
    assert await reader.readexactly(6) == bytes.fromhex("01 04 08 e7 8a 01")
    writer.write(KEEP_ALIVE_BYTES)
    assert await reader.readexactly(2) == KEEP_ALIVE_BYTES
    writer.close()


async def test_rejected_connect_is_byte_exact(server: Roost, registered: None) -> None:
    reader, writer = await open_device(server)
    writer.write(connect_frame("wrong-secret"))
    assert await reader.readexactly(6) == bytes.fromhex("02 04 08 e7 8a 01")
    assert await closed(reader)


async def test_service_calls_are_refused_only_when_awaited(server: Roost, registered: None) -> None:
    reader, writer = await open_device(server)
    writer.write(connect_frame())
    await reader.readexactly(6)
    # IOTMP-Linux layout, no stream id: an endpoint call nobody waits for (bucket writes, which
    # Roost serves, are tested in test_device_buckets.py)
    writer.write(bytes.fromhex("06 19 1a 40 00 00 bc 41 12 8f") + b"temperature_log" + b"\x20\x04")
    # IOTMP-Embedded layout, acknowledged: service id in PARAMETERS, id in RESOURCE
    writer.write(
        iotmp.encode(
            Message(
                MessageType.RUN,
                stream_id=42,
                parameters=int(Service.CALL_ENDPOINT),
                resource="temperature_log",
                payload=1,
            )
        )
    )
    # no such endpoint: refused with the reason (roost.endpoints)
    reason = {"error": "endpoint 'temperature_log' not found"}
    refused = iotmp.encode(Message(MessageType.ERROR, stream_id=42, payload=reason))
    reply = iotmp.Decoder().feed(await reader.readexactly(len(refused)))
    assert reply == [Message(MessageType.ERROR, stream_id=42, payload=reason)]
    writer.write(KEEP_ALIVE_BYTES)
    assert await reader.readexactly(2) == KEEP_ALIVE_BYTES
    writer.close()


async def test_disconnect_message_ends_the_session(
    server: Roost, registered: None, http: httpx.AsyncClient, admin_token: str
) -> None:
    reader, writer = await open_device(server)
    writer.write(connect_frame())
    await reader.readexactly(6)
    url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    assert (await http.get(url, headers=bearer(admin_token))).json()["connected"] is True
    writer.write(iotmp.encode(Message(MessageType.DISCONNECT)))
    assert await closed(reader)

    async def offline() -> bool:
        return (await http.get(url, headers=bearer(admin_token))).json()["connected"] is False

    await wait_for(offline)


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("0b 00"),  # no such message type
        bytes.fromhex("05 01 00"),  # keep-alive with a body
        bytes.fromhex("06 02 08 01"),  # a RUN before CONNECT
        bytes.fromhex("03 ff ff ff ff 0f"),  # declared body far over the limit
        bytes.fromhex("03 03 1a df ff"),  # a map claiming more pairs than bytes
    ],
)
async def test_bad_frames_close_only_that_connection(
    server: Roost, registered: None, garbage: bytes
) -> None:
    good_reader, good_writer = await open_device(server)
    good_writer.write(connect_frame())
    await good_reader.readexactly(6)
    reader, writer = await open_device(server)
    writer.write(garbage)
    assert await closed(reader)
    good_writer.write(KEEP_ALIVE_BYTES)
    assert await good_reader.readexactly(2) == KEEP_ALIVE_BYTES
    good_writer.close()
