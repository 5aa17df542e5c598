"""Hostile and broken devices: floods, trickles, deep nesting, devices that do not read.

Each is refused or cut off with bounded memory, while a well-behaved device and the API keep
answering within normal latency.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.bus.base import DeviceKey, Operation
from roost.config import Settings
from roost.device import Device
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE_BYTES, Message, Signal

from conftest import (
    ADMIN,
    DeviceFactory,
    bearer,
    create_device,
    make_settings,
    sdk_device,
    wait_for,
)

AUTH_OK = bytes.fromhex("01 02 10 01")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        auth_timeout=1.0,
        keepalive_timeout=1.0,
        max_unauthenticated=60,
        max_unauthenticated_per_address=20,
        outbox_limit_bytes=64 * 1024,
    )


@pytest.fixture
async def good_device(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> Device:
    await create_device(http, admin_token, "good")
    device = sdk_device(server, "good", keepalive_interval=0.3)
    device.output("value", lambda: 42)
    return await connect_device(device)


async def timed_call(http: httpx.AsyncClient, token: str) -> float:
    started = time.monotonic()
    response = await http.get(f"/v2/users/{ADMIN}/devices/good/value", headers=bearer(token))
    assert response.json() == {"out": 42}
    return time.monotonic() - started


async def raw_connect(
    port: int, source: str = "127.0.0.1", rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def is_closed(reader: asyncio.StreamReader, within: float = 5) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except ConnectionResetError:
        pass
    return True


async def test_flood_of_silent_connections_is_capped_per_address(
    server: Roost, http: httpx.AsyncClient, admin_token: str, good_device: Device
) -> None:
    flood = [await raw_connect(server.device_port, "127.0.0.9") for _ in range(40)]
    # past 20 from one address, connections are dropped at once
    refused = 0
    for reader, _ in flood[20:]:
        if await is_closed(reader, 0.5):
            refused += 1
    assert refused == 20
    # another device (another address) still gets in, and the API answers quickly
    await create_device(http, admin_token, "late")
    reader, writer = await raw_connect(server.device_port, "127.0.0.10")
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "late", "secret1"])))
    assert await asyncio.wait_for(reader.readexactly(4), 5) == AUTH_OK
    assert await timed_call(http, admin_token) < 1.0
    # the silent ones are cut when their time to authenticate runs out
    started = time.monotonic()
    for flood_reader, _ in flood[:20]:
        assert await is_closed(flood_reader)
    assert time.monotonic() - started < 3
    writer.close()


async def test_trickled_frame_counts_as_silence(
    server: Roost, http: httpx.AsyncClient, admin_token: str, good_device: Device
) -> None:
    await create_device(http, admin_token, "trickle")
    reader, writer = await raw_connect(server.device_port)
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "trickle", "secret1"])))
    assert await reader.readexactly(4) == AUTH_OK
    writer.write(bytes.fromhex("01 e8 07"))  # a 1000-byte message, then a byte at a time
    started = time.monotonic()
    with pytest.raises((ConnectionError, OSError)):
        for _ in range(100):
            writer.write(b"\x00")
            await writer.drain()
            await asyncio.sleep(0.1)
            # an orderly close leaves the reader at EOF; a reset closes the transport
            if reader.at_eof() or writer.is_closing():
                raise ConnectionError("closed")
    assert time.monotonic() - started < 5  # bytes kept coming, no frame did: dropped
    assert await timed_call(http, admin_token) < 1.0


def deeply_nested(depth: int) -> list[object]:
    value: list[object] = ["x"]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "frame",
    [
        legacy.encode(Message(signal=Signal.AUTH, resource=deeply_nested(100))),  # type: ignore[arg-type]
        # an AUTH larger than any real one (4 KiB limit before authentication)
        legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "good", "x" * 5000])),
    ],
    ids=["nesting", "oversized-auth"],
)
async def test_malicious_auth_frames(
    server: Roost, http: httpx.AsyncClient, admin_token: str, good_device: Device, frame: bytes
) -> None:
    reader, writer = await raw_connect(server.device_port)
    writer.write(frame)
    assert await is_closed(reader)
    assert await timed_call(http, admin_token) < 1.0


async def test_device_that_does_not_read_is_dropped(
    server: Roost, http: httpx.AsyncClient, admin_token: str, good_device: Device
) -> None:
    await create_device(http, admin_token, "deaf")
    reader, writer = await raw_connect(server.device_port, rcvbuf=4096)
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "deaf", "secret1"])))
    assert await reader.readexactly(4) == AUTH_OK

    async def keep_alive() -> None:  # it talks, so it is not silent, but never reads
        while True:
            writer.write(KEEP_ALIVE_BYTES)
            await asyncio.sleep(0.2)

    talker = asyncio.create_task(keep_alive())
    payload = {"in": "x" * 60_000}
    url = f"/v2/users/{ADMIN}/devices/deaf/sink"

    async def push() -> int:
        response = await http.post(
            url, json=payload, params={"timeout": 300}, headers=bearer(admin_token)
        )
        return response.status_code

    statuses: list[int] = []
    latencies: list[float] = []
    for _ in range(30):
        statuses += await asyncio.gather(*(push() for _ in range(5)))
        latencies.append(await timed_call(http, admin_token))
        if 404 in statuses:
            break
    talker.cancel()
    assert 404 in statuses  # dropped: later calls find it offline

    async def offline() -> bool:
        stats = await http.get(f"/v1/users/{ADMIN}/devices/deaf/stats", headers=bearer(admin_token))
        return stats.json()["connected"] is False

    await wait_for(offline)
    assert max(latencies) < 1.0  # the good device answered quickly throughout
    writer.close()


async def test_a_burst_past_the_outbox_limit_drops_the_device_at_once(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """Requests written in one loop step wait together for its end (roost.net.batch): what they
    hold counts toward the outbox limit, before the transport's buffer sees any of it."""
    await create_device(http, admin_token, "deaf")
    reader, writer = await raw_connect(server.device_port, rcvbuf=4096)
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "deaf", "secret1"])))
    assert await reader.readexactly(4) == AUTH_OK
    assert server.services is not None
    session = server.services.registry.get(DeviceKey(ADMIN, "deaf"))
    assert session is not None
    for stream_id in range(1, 21):  # 20 x 8 KB in one step, against a 64 KiB limit
        session.link.send_request(stream_id, Operation.CALL, ("sink",), "x" * 8000)
    assert session.closed  # within the step, not after
    assert await is_closed(reader)
    writer.close()


@pytest.mark.parametrize("after_auth", [b"", KEEP_ALIVE_BYTES])
async def test_a_device_that_half_closes_still_gets_its_answers(
    server: Roost, http: httpx.AsyncClient, admin_token: str, after_auth: bytes
) -> None:
    """A device that sends, then shuts its side (FIN), reads what it was owed: the answer to
    its authentication, and a keep-alive's echo, though the connection closes right after."""
    await create_device(http, admin_token, "brief")
    reader, writer = await raw_connect(server.device_port)
    writer.write(legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "brief", "secret1"])))
    if after_auth:
        assert await reader.readexactly(4) == AUTH_OK
        writer.write(after_auth)
    writer.write_eof()
    rest = await asyncio.wait_for(reader.read(), 5)
    assert rest == (KEEP_ALIVE_BYTES if after_auth else AUTH_OK)
    writer.close()
