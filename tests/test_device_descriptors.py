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
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from roost.device import Device

from conftest import ADMIN, ADMIN_PASSWORD, bearer, create_device, login

FD_LIMIT = 256
PARTIAL_AUTH = b"\x01\x20"  # a legacy frame's header, its body never sent
UPGRADE = (
    b"GET /iotmp HTTP/1.1\r\nHost: roost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Protocol: iotmp\r\n\r\n"
)


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def listening_ports(log: Path, process: subprocess.Popen[bytes]) -> dict[str, int]:
    """Every port the server chose, by listener name, from its "listening on" line."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        line = next((line for line in log.read_text().splitlines() if "listening on" in line), "")
        if line:
            return {name: int(port) for name, port in re.findall(r"(\w+) port (\d+)", line)}
        time.sleep(0.05)
    raise AssertionError("the server did not start: " + log.read_text())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, dict[str, int]]]:
    """`roost serve` with TLS and at most 256 open files: its data dir and ports."""
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ROOST_DATA_DIR": str(data),
        "ROOST_TLS_SELF_SIGNED": "1",
        **{f"ROOST_{port}_PORT": "0" for port in ("HTTP", "HTTPS", "DEVICE", "IOTMP")},
        **{f"ROOST_{port}_TLS_PORT": "0" for port in ("DEVICE", "IOTMP")},
        "ROOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # the limits alone must keep the server answering
        "ROOST_AUTH_TIMEOUT": "60",
        "ROOST_HTTP_HEADER_TIMEOUT": "60",
    }
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "roost.cli", "serve"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_low_descriptor_limit,
        )
    try:
        yield data, listening_ports(log, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text())  # shown when the test fails


def flood(port: int, addresses: int, per_address: int, first: bytes = b"") -> list[socket.socket]:
    """Connections from ``addresses`` attacking addresses in turn, each sending ``first``."""
    opened: list[socket.socket] = []
    for n in range(addresses * per_address):
        sock = socket.socket()
        sock.settimeout(0.2)
        opened.append(sock)
        try:
            sock.bind((f"127.0.0.{2 + n % addresses}", 0))
            sock.connect(("127.0.0.1", port))
            if first:
                sock.send(first)
        except OSError:
            pass  # refused, reset or queue full: the server is not keeping up, so much the better
    return opened


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
        attackers = flood(ports["legacy"], 3, 100, PARTIAL_AUTH)
    else:
        attackers = flood(ports["http"], 3, 100, UPGRADE)
    device = Device(ADMIN, "dev1", "secret1", port=ports["legacy"], reconnect_delay=0.2)
    try:
        await asyncio.sleep(0.5)
        await served_meanwhile(data, ports, device)
    finally:
        await device.stop()
        for sock in attackers:
            sock.close()
