"""Floods of device connections that never authenticate leave the server its descriptors.

Against `roost serve` in its own process with at most 256 open files, as a flood would find it,
and with auth_timeout and http_header_timeout at a minute, so that only the limits keep the server
answering. Attackers are plain sockets from loopback addresses (127.0.0.2, ...; the whole 127/8
is loopback on Linux):

- idle TCP connections to a device TLS port (no handshake ever begins): counted among the device
  connections authenticating from their TCP accept, not from the end of their handshake;
- connections to the plain legacy port that send half an authentication frame, and /iotmp
  WebSocket upgrades that then send nothing: the device connections authenticating take at most
  a quarter of the open files, as HTTP's pending ones do.

Meanwhile the plain-HTTP healthcheck is answered and a real device logs in.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roost.device import Device
from roost.wire import legacy
from roost.wire.legacy import Message, Signal

from conftest import ADMIN, bearer, create_device, login
from few_files import FD_LIMIT, few_files_server, flood

PARTIAL_AUTH = b"\x01\x20"  # a legacy frame's header, its body never sent
UPGRADE = (
    b"GET /iotmp HTTP/1.1\r\nHost: roost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: iotmp\r\n\r\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """`roost serve` with TLS and few open files, its timeouts at a minute: data dir and ports."""
    with few_files_server(
        tmp_path, tls_self_signed="1", auth_timeout="60", http_header_timeout="60"
    ) as running:
        yield running


async def served_meanwhile(data: Path, ports: dict[str, int], device: Device) -> None:
    """Fresh healthchecks over plain HTTP are answered, and ``device`` gets in."""
    base_url = f"http://127.0.0.1:{ports['http']}"
    for _ in range(5):  # fresh clients, one after another
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as fresh:
            assert (await fresh.get("/v1/server/healthcheck")).status_code == 200
    await device.start()
    await device.wait_connected(10)
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        token = await login(http)
        stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(token))
    assert stats.json()["connected"] is True


async def prepare(ports: dict[str, int]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http']}", timeout=10) as http:
        await create_device(http, await login(http))


@pytest.mark.parametrize("flooded", ["legacy_tls", "iotmp_tls"])
async def test_idle_connections_to_a_device_tls_port_past_the_descriptor_limit(
    server: tuple[Path, dict[str, int]], flooded: str
) -> None:
    # 25 addresses x 12, twice: before, none counted until a handshake that never came
    data, ports = server
    await prepare(ports)
    attackers = flood(ports[flooded], 25, 12)
    context = ssl.create_default_context(cafile=str(data / "tls/self-signed.crt"))
    device = Device(
        ADMIN,
        "dev1",
        "secret1",
        host="localhost",
        port=ports["legacy_tls"],
        ssl=context,
        reconnect_delay=0.2,
    )
    try:
        await asyncio.sleep(0.5)  # the server meets the flood; a second wave comes
        attackers += flood(ports[flooded], 25, 12)
        await asyncio.sleep(0.5)
        await served_meanwhile(data, ports, device)
    finally:
        await device.stop()
        for sock in attackers:
            sock.close()


@pytest.mark.parametrize("attack", ["partial_auth", "iotmp_upgrade"])
async def test_device_connections_authenticating_leave_the_descriptors_to_others(
    server: tuple[Path, dict[str, int]], attack: str
) -> None:
    # 3 addresses x 100, each within its share: before, the budget of 1,000 let them take all
    data, ports = server
    await prepare(ports)
    if attack == "partial_auth":
        attackers = flood(ports["legacy"], 3, 100, lambda n: PARTIAL_AUTH)
    else:
        attackers = flood(ports["http"], 3, 100, lambda n: UPGRADE)
    device = Device(ADMIN, "dev1", "secret1", port=ports["legacy"], reconnect_delay=0.2)
    try:
        await asyncio.sleep(0.5)
        await served_meanwhile(data, ports, device)
    finally:
        await device.stop()
        for sock in attackers:
            sock.close()


def legacy_device(port: int, name: str) -> socket.socket | None:
    """A device of the admin's that authenticates over the legacy protocol and then says nothing:
    its socket, or None if the server refused it (closed without letting it in)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    auth = Message(signal=Signal.AUTH, resource=[ADMIN, name, "secret1"])
    sock.sendall(legacy.encode(auth))
    decoder = legacy.Decoder()
    while True:
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            data = b""
        if not data:
            sock.close()
            return None
        for frame in decoder.feed(data):
            if isinstance(frame, Message):
                if frame.signal == Signal.REQUEST_OK:
                    return sock
                sock.close()
                return None


async def test_devices_leave_the_http_api_its_descriptors(
    server: tuple[Path, dict[str, int]],
) -> None:
    # 256 open files: before, devices took them all and every new connection, the API's
    # included, was closed at once; now they stop short (the pending HTTP budget and a reserve)
    _, ports = server
    base_url = f"http://127.0.0.1:{ports['http']}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        token = await login(http)
        for i in range(1, FD_LIMIT + 1):
            await create_device(http, token, f"dev{i}")
    device = Device(ADMIN, "dev1", "secret1", port=ports["legacy"], reconnect_delay=0.2)
    device.output("temperature", lambda: 21.5)
    held: list[socket.socket] = []
    try:
        await device.start()
        await device.wait_connected(10)
        refused, last = False, ""
        for i in range(2, FD_LIMIT + 1):  # more devices than open files
            sock = await asyncio.to_thread(legacy_device, ports["legacy"], f"dev{i}")
            if sock is None:
                refused, last = True, f"dev{i}"
                break
            held.append(sock)
        assert refused and len(held) > FD_LIMIT // 4
        for _ in range(5):  # fresh clients, one after another
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as fresh:
                assert (await fresh.get("/v1/server/healthcheck")).status_code == 200
                called = await fresh.get(
                    f"/v2/users/{ADMIN}/devices/dev1/temperature", headers=bearer(token)
                )
                assert called.status_code == 200, called.text
                assert called.json() == {"out": 21.5}
        held.pop().close()  # one goes: the device refused gets in (once the server sees it go)
        deadline = asyncio.get_running_loop().time() + 10
        while (sock := await asyncio.to_thread(legacy_device, ports["legacy"], last)) is None:
            assert asyncio.get_running_loop().time() < deadline, "no room made"
            await asyncio.sleep(0.05)
        held.append(sock)
    finally:
        await device.stop()
        for sock in held:
            sock.close()
