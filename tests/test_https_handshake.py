"""HTTPS connections that never finish their TLS handshake are bounded as plain HTTP ones are
(issue 14, item 4): in time by ``http_header_timeout``, from the TCP accept, handshake and first
request head together; in number as pending connections, per address and in all.

Real sockets against a real Roost with a self-signed certificate. Attackers speak raw TCP, each
from its own loopback address (127.0.0.2, 127.0.0.3, ...; the whole 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import connect

import roost.app
from roost.api.app import RestApi
from roost.app import Roost
from roost.device import Device
from roost.net.http import Answer

from conftest import ADMIN, bearer, create_device, login, make_settings
from few_files import few_files_server, flood

HEALTH = b"GET /v1/server/healthcheck HTTP/1.1\r\nHost: localhost\r\n"

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: object) -> AsyncIterator[Roost]:
    roost = Roost(make_settings(tmp_path / "data", tls_self_signed=True, **overrides))
    await roost.start()
    try:
        yield roost
    finally:
        await roost.stop()


def client_context(server: Roost) -> ssl.SSLContext:
    """Trust the server's self-signed certificate."""
    return ssl.create_default_context(cafile=str(server.settings.data_dir / "tls/self-signed.crt"))


def https(server: Roost) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"https://localhost:{server.ports['https']}",
        verify=client_context(server),
        timeout=10,
    )


def client_hello() -> bytes:
    """The first flight of a real TLS client."""
    context = ssl.create_default_context()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname="x")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def open_from(address: str, server: Roost) -> Stream:
    """A TCP connection to the HTTPS port from ``address``, no TLS yet."""
    port = server.ports["https"]
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))


async def secure(server: Roost, stream: Stream) -> None:
    """Do the client's side of the handshake on ``stream``."""
    await stream[1].start_tls(client_context(server), server_hostname="localhost")


async def closed_after(reader: asyncio.StreamReader, since: float, within: float = 5.0) -> float:
    """Seconds from ``since`` (loop time) until the server closes the connection, which must
    send nothing and close within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(reader.read(), within) == b""
    return loop.time() - since


async def health(stream: Stream) -> bytes:
    reader, writer = stream
    writer.write(HEALTH + b"Connection: close\r\n\r\n")
    return await asyncio.wait_for(reader.read(), 5)


# In time ----------------------------------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed_in_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, http_header_timeout=0.5) as server:
        opened = asyncio.get_running_loop().time()
        reader, writer = await open_from("127.0.0.1", server)
        assert 0.4 < await closed_after(reader, opened) < 2  # asyncio's own default: 60 s
        writer.close()


async def test_a_client_hello_cut_short_is_closed_in_the_header_timeout(tmp_path: Path) -> None:
    hello = client_hello()
    async with running(tmp_path, http_header_timeout=0.5) as server:
        opened = asyncio.get_running_loop().time()
        reader, writer = await open_from("127.0.0.1", server)
        writer.write(hello[: len(hello) // 2])
        assert 0.4 < await closed_after(reader, opened) < 2
        writer.close()


async def test_the_handshake_and_the_first_head_share_the_header_timeout(tmp_path: Path) -> None:
    # one clock from the TCP accept: a slow handshake leaves the head what is left, not a new 1 s
    async with running(tmp_path, http_header_timeout=1.0) as server:
        opened = asyncio.get_running_loop().time()
        stream = await open_from("127.0.0.1", server)
        await asyncio.sleep(0.7)
        await secure(server, stream)
        assert 0.9 < await closed_after(stream[0], opened) < 1.5  # two clocks: 1.7
        stream[1].close()


async def test_a_head_that_never_ends_over_tls_is_answered_408(tmp_path: Path) -> None:
    async with running(tmp_path, http_header_timeout=0.5) as server:
        reader, writer = stream = await open_from("127.0.0.1", server)
        await secure(server, stream)
        writer.write(HEALTH + b"X-Slow: ")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_stopping_the_server_closes_handshakes_in_progress(tmp_path: Path) -> None:
    server = Roost(make_settings(tmp_path / "data", tls_self_signed=True))
    await server.start()
    try:
        reader, writer = await open_from("127.0.0.1", server)
        await asyncio.sleep(0.2)  # accepted, handshake awaited
    finally:
        stopping = asyncio.get_running_loop().time()
        await server.stop()
    assert await closed_after(reader, stopping) < 2  # not the graceful shutdown's 5 s
    writer.close()


# In number ------------------------------------------------------------------------------------


async def test_addresses_keep_at_most_their_share_of_handshakes(tmp_path: Path) -> None:
    async with running(tmp_path, http_max_pending_per_address=5) as server:
        attackers = [f"127.0.0.{n}" for n in (2, 3, 4)]
        streams = [await open_from(address, server) for address in attackers for _ in range(8)]
        reads = [asyncio.create_task(reader.read()) for reader, _ in streams]
        # three of each address's eight are closed at once (the header timeout is 10 s)
        done, _ = await asyncio.wait(reads, timeout=3)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while len(done) < 9 and loop.time() < deadline:
            done = {read for read in reads if read.done()}
            await asyncio.sleep(0.05)
        assert len(done) == 9 and all(read.result() == b"" for read in done)
        # a newcomer is served, and so are the five of each address that came first
        async with https(server) as client:
            assert (await client.get("/v1/server/healthcheck")).status_code == 200
        waiting = [stream for stream, read in zip(streams, reads, strict=True) if not read.done()]
        for read in reads:
            read.cancel()
        for stream in waiting:
            await secure(server, stream)
            assert (await health(stream)).startswith(b"HTTP/1.1 200 ")
        for _, writer in streams:
            writer.close()


async def test_at_the_limit_the_oldest_handshake_makes_room(tmp_path: Path) -> None:
    async with running(tmp_path, http_max_pending=10) as server:
        idle = [await open_from(f"127.0.0.{2 + n}", server) for n in range(10)]
        oldest = asyncio.create_task(idle[0][0].read())
        await asyncio.sleep(0.2)
        assert not oldest.done()
        async with https(server) as client:
            assert (await client.get("/v1/server/healthcheck")).status_code == 200
        assert await asyncio.wait_for(oldest, 5) == b""
        for _, writer in idle:
            writer.close()


# A flood past the descriptor limit, against a server in its own process -------------------------

FLOOD_ADDRESSES = 40
FLOOD_PER_ADDRESS = 15  # 600 connections a wave: half silent, half a ClientHello cut short


@pytest.fixture
def low_fd_server(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    """`roost serve` with TLS and few open files: its data dir, HTTPS and device ports."""
    with few_files_server(tmp_path, tls_self_signed="1", http_header_timeout="60") as (data, ports):
        yield data, ports["https"], ports["legacy"]


def half_hellos(hello: bytes) -> Callable[[int], bytes]:
    """Every other connection sends half a ClientHello, the rest nothing."""
    return lambda n: hello[: len(hello) // 2] if n % 2 else b""


async def test_a_flood_of_handshakes_past_the_descriptor_limit_leaves_https_and_devices_served(
    low_fd_server: tuple[Path, int, int],
) -> None:
    data, https_port, device_port = low_fd_server
    context = ssl.create_default_context(cafile=str(data / "tls/self-signed.crt"))
    base_url = f"https://localhost:{https_port}"
    async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=10) as client:
        token = await login(client)
        await create_device(client, token)
    hello = client_hello()
    attackers = flood(https_port, FLOOD_ADDRESSES, FLOOD_PER_ADDRESS, half_hellos(hello))
    device = Device(ADMIN, "dev1", "secret1", port=device_port, reconnect_delay=0.2)
    try:
        await asyncio.sleep(0.5)  # the server meets the flood; a second wave comes
        attackers += flood(https_port, FLOOD_ADDRESSES, FLOOD_PER_ADDRESS, half_hellos(hello))
        await asyncio.sleep(0.5)
        for _ in range(5):  # fresh clients, one after another
            async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=10) as fresh:
                assert (await fresh.get("/v1/server/healthcheck")).status_code == 200
        await device.start()
        await device.wait_connected(10)
        async with httpx.AsyncClient(base_url=base_url, verify=context, timeout=10) as client:
            stats = await client.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(token))
        assert stats.json()["connected"] is True
    finally:
        await device.stop()
        for sock in attackers:
            sock.close()


# What HTTPS still does --------------------------------------------------------------------------


@pytest.fixture
def schemes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(path, scheme) of every request the API is asked, ASGI or direct."""
    seen: list[tuple[str, str]] = []

    class Recording(RestApi):
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((scope["path"], scope["scheme"]))
            await super().__call__(scope, receive, send)

        def direct(self, scope: Scope, receive: Receive) -> Coroutine[Any, Any, Answer] | None:
            seen.append((scope["path"], scope["scheme"]))
            return super().direct(scope, receive)

    monkeypatch.setattr(roost.app, "RestApi", Recording)
    return seen


async def test_requests_calls_and_streams_over_https_see_the_https_scheme(
    tmp_path: Path, schemes: list[tuple[str, str]]
) -> None:
    async with running(tmp_path) as server, https(server) as client:
        token = await login(client)
        await create_device(client, token)
        device = Device(ADMIN, "dev1", "secret1", port=server.device_port, reconnect_delay=0.2)
        device.output("temperature", lambda: 21.5)
        await device.start()
        try:
            await device.wait_connected(5)
            url = f"/v2/users/{ADMIN}/devices/dev1/temperature"
            for _ in range(2):  # the direct path, on a kept-alive connection
                response = await client.get(url, headers=bearer(token))
                assert response.json() == {"out": 21.5}
            stream = (
                f"wss://localhost:{server.ports['https']}/v3/users/{ADMIN}/devices/dev1/resources"
                f"?authorization={token}"
            )
            async with connect(stream, ssl=client_context(server)) as ws:
                await ws.send(json.dumps({"resource": "temperature", "interval": 1}))
                frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert frame["resource"] == "temperature" and frame["out"] == 21.5
        finally:
            await device.stop()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as plain:
            assert (await plain.get("/v1/server/healthcheck")).status_code == 200
    assert ("/oauth/token", "https") in schemes
    assert (url, "https") in schemes
    assert (f"/v3/users/{ADMIN}/devices/dev1/resources", "wss") in schemes
    assert ("/v1/server/healthcheck", "http") in schemes  # the plain port is still plain
    assert {scheme for _, scheme in schemes} == {"https", "wss", "http"}
