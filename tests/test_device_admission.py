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
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import roost.app
from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.device.client import ProtocolName
from roost.devices.admission import Admission

from conftest import (
    ADMIN,
    DeviceFactory,
    bearer,
    create_device,
    login,
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
    # the handshake has the deadline of authentication (asyncio's default was 60 s)
    roost = Roost(make_settings(tmp_path / "tls", tls_self_signed=True, auth_timeout=1.0))
    await roost.start()
    try:
        reader, writer = await raw_connect(roost.ports["legacy_tls"], "127.0.0.1")
        assert await closed(reader, 10)
        writer.close()
    finally:
        await roost.stop()


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path, **overrides: object) -> AsyncIterator[Roost]:
    roost = Roost(make_settings(tmp_path / "tls", tls_self_signed=True, **overrides))
    await roost.start()
    try:
        yield roost
    finally:
        await roost.stop()


def trusting(server: Roost) -> ssl.SSLContext:
    """A client context that trusts the server's self-signed certificate."""
    return ssl.create_default_context(cafile=str(server.settings.data_dir / "tls/self-signed.crt"))


@pytest.mark.parametrize("port", ["legacy_tls", "iotmp_tls"])
async def test_a_tls_handshake_counts_among_the_connections_authenticating(
    tmp_path: Path, port: str
) -> None:
    # from its TCP accept, not from the end of its handshake: an address's sixth is refused at
    # once, and the five before it hold their places (the deadline is a minute away)
    async with tls_server(tmp_path, max_unauthenticated_per_address=5, auth_timeout=60.0) as server:
        conns = [await raw_connect(server.ports[port], ADDRESSES[0]) for _ in range(5)]
        refused, _ = await raw_connect(server.ports[port], ADDRESSES[0])
        assert await closed(refused, 5)
        assert server.services is not None
        assert server.services.gateway.admission.total == 5
        for reader, _ in conns:
            assert not await closed(reader, 0.01)
        for _, writer in conns:
            writer.close()
        admission = server.services.gateway.admission

        async def released() -> bool:
            return admission.total == 0

        await wait_for(released)


async def test_a_device_on_the_tls_port_makes_room_among_silent_handshakes(
    tmp_path: Path,
) -> None:
    # the budget is full of handshakes that never begin: a device from another address takes
    # the place of one of the busiest address's, and gets in over TLS
    async with tls_server(
        tmp_path, max_unauthenticated=10, max_unauthenticated_per_address=5, auth_timeout=60.0
    ) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as plain:
            token = await login(plain)
            await create_device(plain, token, "dev1")
        port = server.ports["legacy_tls"]
        idle = [await raw_connect(port, source) for source in ADDRESSES[:2] for _ in range(5)]
        assert server.services is not None
        admission = server.services.gateway.admission

        async def full() -> bool:
            return admission.total == 10

        await wait_for(full)
        device = Device(
            ADMIN,
            "dev1",
            "secret1",
            host="localhost",
            port=port,
            ssl=trusting(server),
            reconnect_delay=0.2,
        )
        await device.start()
        try:
            await device.wait_connected(5)
        finally:
            await device.stop()
        assert sum([await closed(reader, 0.01) for reader, _ in idle]) == 1
        for _, writer in idle:
            writer.close()


async def test_the_tls_handshake_and_the_authentication_share_the_auth_timeout(
    tmp_path: Path,
) -> None:
    # one clock from the TCP accept: a slow handshake leaves authentication what is left
    async with tls_server(tmp_path, auth_timeout=1.0) as server:
        loop = asyncio.get_running_loop()
        opened = loop.time()
        reader, writer = await raw_connect(server.ports["legacy_tls"], "127.0.0.1")
        await asyncio.sleep(0.7)
        await writer.start_tls(trusting(server), server_hostname="localhost")
        assert await closed(reader, 5)
        assert 0.9 < loop.time() - opened < 1.5  # two clocks: 1.7
        writer.close()


async def test_stopping_the_server_closes_device_handshakes_in_progress(tmp_path: Path) -> None:
    server = Roost(make_settings(tmp_path / "tls", tls_self_signed=True, auth_timeout=60.0))
    await server.start()
    try:
        reader, writer = await raw_connect(server.ports["iotmp_tls"], "127.0.0.1")
        await asyncio.sleep(0.2)  # accepted, handshake awaited
    finally:
        await server.stop()
    assert await closed(reader, 2)
    writer.close()


async def test_an_iotmp_websocket_counts_as_authenticating_from_its_upgrade(server: Roost) -> None:
    # not as a pending HTTP connection as well, and in neither once it is gone
    assert server.services is not None and server._pending is not None
    admission, pending = server.services.gateway.admission, server._pending
    reader, writer = await raw_connect(server.http_port, "127.0.0.2")
    writer.write(
        b"GET /iotmp HTTP/1.1\r\nHost: roost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: iotmp\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101 ")
    assert admission.total == 1 and len(pending) == 0
    writer.close()

    async def released() -> bool:
        return admission.total == 0 and len(pending) == 0

    await wait_for(released)


async def test_device_connections_authenticating_take_at_most_a_quarter_of_the_open_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roost.app, "raise_descriptor_limit", lambda: 200)
    async with tls_server(tmp_path) as server:
        assert server.services is not None
        assert server.services.gateway.admission.limit == 50  # not max_unauthenticated's 1000


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


def test_at_the_room_the_busiest_address_makes_room_and_devices_in_are_never_evicted() -> None:
    connected = [3]  # devices in
    admission = Admission(limit=10, per_address=10, connected=lambda: connected[0])
    admission.room = 6
    waiting = [Waiter(), Waiter(), Waiter()]
    assert all(admission.admit(w, "10.0.0.1") for w in waiting)
    # 3 in and 3 silent from one address: full; a newcomer from another address takes the
    # oldest silent one's place (a few addresses cannot lock the others out of the room)
    newcomer = Waiter()
    assert admission.admit(newcomer, "10.0.0.2") and admission.full
    assert [w.evicted is not None for w in waiting] == [True, False, False]
    admission.checking(waiting[1])  # its credentials being checked: never evicted
    admission.checking(waiting[2])
    admission.checking(newcomer)
    assert not admission.admit(Waiter(), "10.0.0.3")  # nobody left to evict: refused
    connected[0] -= 1  # a device went
    assert admission.admit(Waiter(), "10.0.0.3")
