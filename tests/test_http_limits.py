"""HTTP connections that send no whole request are bounded in time and number (issue 14, item 4).

Idle and slow connections against a real Roost: on loopback, each attacker address is one of
127.0.0.2, 127.0.0.3, ... (the whole 127/8 is loopback on Linux). The flood test runs the server
in its own process with a low descriptor limit, as a flood would find it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType

from conftest import (
    ADMIN,
    bearer,
    create_device,
    login,
    make_settings,
    sdk_device,
)
from few_files import few_files_server, flood

HEALTH = b"GET /v1/server/healthcheck HTTP/1.1\r\nHost: roost\r\n"
SLOW_HEAD = HEALTH + b"X-Slow: "


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: object) -> AsyncIterator[Roost]:
    roost = Roost(make_settings(tmp_path / "data", **overrides))
    await roost.start()
    try:
        yield roost
    finally:
        await roost.stop()


async def open_from(address: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def closed_by_server(reader: asyncio.StreamReader, within: float = 5.0) -> bytes:
    """All the server sends until it closes the connection (fails if it does not, in time)."""
    return await asyncio.wait_for(reader.read(), within)


async def dribble(writer: asyncio.StreamWriter) -> None:
    """A header that never ends: one byte at a time, until the server closes."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.1)


async def test_a_connection_that_sends_nothing_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path, http_header_timeout=0.5) as server:
        reader, writer = await open_from("127.0.0.1", server.http_port)
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_a_header_that_never_ends_is_answered_408_and_closed(tmp_path: Path) -> None:
    async with running(tmp_path, http_header_timeout=0.5) as server:
        reader, writer = await open_from("127.0.0.1", server.http_port)
        writer.write(SLOW_HEAD)
        slow = asyncio.create_task(dribble(writer))
        answer = await closed_by_server(reader)
        slow.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b'{"error":{"message":"request head not received in time"}}')


async def test_a_kept_alive_connection_has_the_same_time_for_its_next_head(
    tmp_path: Path,
) -> None:
    # uvicorn's keep-alive timer stops at the first byte of the next request; this one does not
    async with running(tmp_path, http_header_timeout=0.5) as server:
        reader, writer = await open_from("127.0.0.1", server.http_port)
        writer.write(HEALTH + b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if b"content-length" in line
        )
        await reader.readexactly(length)
        writer.write(SLOW_HEAD)
        slow = asyncio.create_task(dribble(writer))
        answer = await closed_by_server(reader)
        slow.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_the_header_timeout_spares_a_websocket_once_upgraded(tmp_path: Path) -> None:
    async with running(tmp_path, http_header_timeout=0.3) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as http:
            await create_device(http, await login(http))
        async with connect(f"ws://127.0.0.1:{server.http_port}/iotmp") as ws:
            hello = Message(MessageType.CONNECT, stream_id=7, payload=[ADMIN, "dev1", "secret1"])
            await ws.send(iotmp.encode(hello))
            assert await asyncio.wait_for(ws.recv(), 5) == bytes.fromhex("01 02 08 07")
            await asyncio.sleep(0.6)  # twice the header timeout
            await ws.send(KEEP_ALIVE_BYTES)
            assert await asyncio.wait_for(ws.recv(), 5) == KEEP_ALIVE_BYTES


async def test_the_header_timeout_spares_a_request_being_answered(tmp_path: Path) -> None:
    async def slow() -> int:
        await asyncio.sleep(0.6)  # twice the header timeout
        return 1

    async with running(tmp_path, http_header_timeout=0.3) as server:
        base_url = f"http://127.0.0.1:{server.http_port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            token = await login(http)
            await create_device(http, token)
            device = sdk_device(server)
            device.output("slow", slow)
            await device.start()
            try:
                await device.wait_connected(5)
                url = f"/v2/users/{ADMIN}/devices/dev1/slow"
                for _ in range(2):  # and the kept-alive connection serves the next one
                    response = await http.get(url, headers=bearer(token))
                    assert response.json() == {"out": 1}
            finally:
                await device.stop()


async def test_one_address_keeps_at_most_its_share_waiting(tmp_path: Path) -> None:
    async with running(tmp_path, http_max_pending_per_address=5) as server:
        port = server.http_port
        attacker = [await open_from("127.0.0.2", port) for _ in range(8)]
        reads = [asyncio.create_task(reader.read()) for reader, _ in attacker]
        # three are closed at once, without an answer
        deadline = asyncio.get_running_loop().time() + 5
        while sum(read.done() for read in reads) < 3:
            assert asyncio.get_running_loop().time() < deadline, "no connection was refused"
            await asyncio.wait(reads, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
        refused = [read for read in reads if read.done()]
        assert len(refused) == 3 and all(read.result() == b"" for read in refused)
        # the five that came first are still served, and so is everyone else
        for (_, writer), read in zip(attacker, reads, strict=True):
            if not read.done():
                writer.write(HEALTH + b"Connection: close\r\n\r\n")
        answers = [await asyncio.wait_for(read, 5) for read in reads]
        assert sum(answer.startswith(b"HTTP/1.1 200 ") for answer in answers) == 5
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/v1/server/healthcheck")).status_code == 200
        for _, writer in attacker:
            writer.close()


async def test_at_the_limit_the_oldest_waiting_connection_makes_room(tmp_path: Path) -> None:
    async with running(tmp_path, http_max_pending=10) as server:
        port = server.http_port
        idle = [await open_from(f"127.0.0.{2 + n}", port) for n in range(10)]
        oldest = asyncio.create_task(idle[0][0].read())
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/v1/server/healthcheck")).status_code == 200
        assert await asyncio.wait_for(oldest, 5) == b""
        for _, writer in idle:
            writer.close()


# A flood well past the descriptor limit, against a server in its own process -------------------

FLOOD_ADDRESSES = 40
FLOOD_PER_ADDRESS = 15  # 600 connections a wave, half idle, half a never-ending header


@pytest.fixture
def low_fd_server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """`roost serve` with few open files; yields its HTTP and legacy device ports."""
    with few_files_server(tmp_path, http_header_timeout="60") as (_, ports):
        yield ports["http"], ports["legacy"]


def flood_wave(port: int) -> tuple[list[socket.socket], list[socket.socket]]:
    """A wave of connections from the attacker's addresses in turn: half send nothing, half start
    a header that never ends (:func:`keep_flooding`). Returns both halves, idle and slow."""
    opened = flood(port, FLOOD_ADDRESSES, FLOOD_PER_ADDRESS, lambda n: SLOW_HEAD if n % 2 else b"")
    return opened[0::2], opened[1::2]


async def keep_flooding(slow: list[socket.socket]) -> None:
    """One more header byte on every slow connection, every half second."""
    while True:
        for sock in slow:
            with contextlib.suppress(OSError):
                sock.send(b"a")
        await asyncio.sleep(0.5)


async def test_a_flood_past_the_descriptor_limit_leaves_the_api_and_devices_served(
    low_fd_server: tuple[int, int],
) -> None:
    http_port, device_port = low_fd_server
    base_url = f"http://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        token = await login(http)
        await create_device(http, token)
    idle, slow = flood_wave(http_port)
    dribbling = asyncio.create_task(keep_flooding(slow))
    device = Device(ADMIN, "dev1", "secret1", port=device_port, reconnect_delay=0.2)
    try:
        await asyncio.sleep(0.5)  # the server meets the flood; a second wave comes
        more_idle, more_slow = flood_wave(http_port)
        idle += more_idle
        slow += more_slow
        await asyncio.sleep(0.5)
        for _ in range(5):  # fresh clients, one after another
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as fresh:
                assert (await fresh.get("/v1/server/healthcheck")).status_code == 200
        await device.start()
        await device.wait_connected(10)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(token))
        assert stats.json()["connected"] is True
    finally:
        dribbling.cancel()
        await device.stop()
        for sock in idle + slow:
            sock.close()


def test_the_settings_reach_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roost.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    for flag in ("--http-header-timeout", "--http-max-pending", "--http-max-pending-per-address"):
        assert flag in result.stdout
    assert Settings().http_header_timeout == 10.0
