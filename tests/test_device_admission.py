"""Device logins under a flood of idle connections (issue 14, item 4).

Idle connections from ten addresses fill the global budget of connections still authenticating
(the shape of the attack: 100 from each of 10 addresses against 1,000; here 20 from each against
200, so that it is fast). A real device from another address must still get in, on both device
ports, and answer a resource call through the REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.device.client import ProtocolName
from roost.devices.admission import Admission

from conftest import (
    ADMIN,
    DeviceFactory,
    bearer,
    create_device,
    make_settings,
    sdk_device,
    wait_for,
)

ADDRESSES = [f"127.0.0.{i}" for i in range(2, 12)]  # ten attacking addresses
PER_ADDRESS = 20
BUDGET = PER_ADDRESS * len(ADDRESSES)  # the attack fills it exactly


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        max_unauthenticated=BUDGET,
        max_unauthenticated_per_address=PER_ADDRESS,
        auth_timeout=60.0,  # the idle ones hold their places for the whole test
    )


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def raw_connect(port: int, source: str) -> Conn:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def closed(reader: asyncio.StreamReader, within: float) -> bool:
    """True if the server closes the connection within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


class Flood:
    """Idle connections from each attacking address, reopened whenever the server closes one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.tasks: list[asyncio.Task[None]] = []
        self.reopened = 0

    async def start(self) -> None:
        conns = [
            await raw_connect(self.port, source) for source in ADDRESSES for _ in range(PER_ADDRESS)
        ]
        # the server takes connections in order: once one more from the first address is
        # refused (its budget is full), every earlier one has been counted
        reader, _ = await raw_connect(self.port, ADDRESSES[0])
        assert await closed(reader, 5)
        for i, conn in enumerate(conns):
            source = ADDRESSES[i // PER_ADDRESS]
            self.tasks.append(asyncio.create_task(self._hold(source, conn)))

    async def _hold(self, source: str, conn: Conn) -> None:
        while True:
            reader, writer = conn
            with contextlib.suppress(ConnectionError):
                while await reader.read(4096):
                    pass
            writer.close()
            await asyncio.sleep(0.05)
            self.reopened += 1
            with contextlib.suppress(OSError):
                conn = await raw_connect(self.port, source)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.mark.parametrize("protocol", ["legacy", "iotmp"])
async def test_device_gets_in_while_idle_connections_fill_the_budget(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token, "dev1")
    port = server.device_port if protocol == "legacy" else server.iotmp_port
    flood = Flood(port)
    await flood.start()
    try:
        device = sdk_device(server, "dev1", protocol)
        device.output("value", lambda: 42)
        # a bounded wait far below the flood's auth_timeout (60 s): before, every attempt was
        # refused until the idle connections timed out
        await connect_device(device, wait=False)
        await device.wait_connected(10)

        # the attacker's evicted connection comes back and fills the budget again
        async def reopened() -> bool:
            return flood.reopened >= 1

        await wait_for(reopened)
        response = await http.get(
            f"/v2/users/{ADMIN}/devices/dev1/value", headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"out": 42}
    finally:
        await flood.stop()


async def test_the_silent_go_before_those_that_started_to_authenticate(server: Roost) -> None:
    flood = [
        await raw_connect(server.device_port, source)
        for source in ADDRESSES
        for _ in range(PER_ADDRESS)
    ]
    # the oldest connection of every address starts an authentication (half a frame)
    talkers = flood[::PER_ADDRESS]
    for _, writer in talkers:
        writer.write(b"\x01\x20\x00")
        await writer.drain()
    reader, _ = await raw_connect(server.device_port, ADDRESSES[0])
    assert await closed(reader, 5)  # the budget is full
    await asyncio.sleep(0.1)  # the half frames, already on the server's side, are read
    # a newcomer from another address takes a place: the oldest silent connection of one of
    # the busiest addresses leaves, not the older one that is talking
    newcomer, newcomer_writer = await raw_connect(server.device_port, "127.0.0.1")
    second_oldest = flood[1::PER_ADDRESS]
    waits = [asyncio.create_task(closed(reader, 5)) for reader, _ in second_oldest]
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    assert any(task.result() for task in done)
    for task in pending:
        task.cancel()
    for reader, _ in talkers:
        assert not await closed(reader, 0.01)
    assert not await closed(newcomer, 0.01)
    for _, writer in [*flood, (newcomer, newcomer_writer)]:
        writer.close()


async def test_an_idle_tls_connection_is_closed_at_the_auth_deadline(tmp_path: Path) -> None:
    # before its handshake a TLS connection is not yet a device connection: the handshake has
    # the same deadline as authentication (asyncio's default was 60 s)
    roost = Roost(make_settings(tmp_path / "tls", tls_self_signed=True, auth_timeout=1.0))
    await roost.start()
    try:
        reader, writer = await raw_connect(roost.ports["legacy_tls"], "127.0.0.1")
        assert await closed(reader, 10)
        writer.close()
    finally:
        await roost.stop()


class Waiter:
    """A connection as the admission sees it, without a socket."""

    def __init__(self) -> None:
        self.evicted: str | None = None

    def evict(self, reason: str) -> None:
        self.evicted = reason


def test_the_busiest_address_makes_room_and_the_busiest_newcomer_is_refused() -> None:
    admission = Admission(limit=6, per_address=4)
    a = [Waiter() for _ in range(4)]
    b = [Waiter() for _ in range(2)]
    assert all(admission.admit(w, "10.0.0.1") for w in a)
    assert all(admission.admit(w, "10.0.0.2") for w in b)
    # full: a newcomer from a third address evicts the oldest of the address holding the most
    c = Waiter()
    assert admission.admit(c, "10.0.0.3")
    assert a[0].evicted and not any(w.evicted for w in [*a[1:], *b])
    # one from the second address (2 held) still evicts from the first (3 held) ...
    b2 = Waiter()
    assert admission.admit(b2, "10.0.0.2")
    assert a[1].evicted
    # ... but now the busiest hold as many as it: refused, nobody evicted
    assert not admission.admit(Waiter(), "10.0.0.2")
    assert not a[2].evicted and admission.total == 6


def test_those_being_checked_are_not_evicted_and_release_counts_once() -> None:
    admission = Admission(limit=2, per_address=2)
    first, second = Waiter(), Waiter()
    assert admission.admit(first, "10.0.0.1") and admission.admit(second, "10.0.0.1")
    admission.checking(first)
    admission.checking(second)
    assert not admission.admit(Waiter(), "10.0.0.2")  # nothing may be evicted
    admission.release(first)
    admission.release(first)
    assert admission.total == 1
    assert admission.admit(Waiter(), "10.0.0.2")
