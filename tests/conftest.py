"""Shared fixtures: a real Roost on loopback ports chosen by the OS, an HTTP client, helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvloop

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.device.client import ProtocolName
from roost.wiring import BusFactory, local_bus

from nats_server import session_bus
from wire_bus import WireBus

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    base = Settings(
        data_dir=data_dir,
        host="127.0.0.1",
        http_port=0,
        device_port=0,
        iotmp_port=0,
        https_port=0,
        device_tls_port=0,
        iotmp_tls_port=0,
        admin_user=ADMIN,
        admin_password=ADMIN_PASSWORD,
    )
    return dataclasses.replace(base, **overrides)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop, as `roost serve` does."""
    return {"uvloop": uvloop.new_event_loop}


# where CI's PostgreSQL is (`make postgres` creates this role and database)
CI_DATABASE_URL = "postgresql://roost:roost@127.0.0.1:5432/roost_test"


def _postgres_base_url() -> str:
    url = os.environ.get("ROOST_TEST_DATABASE_URL") or (
        CI_DATABASE_URL if os.environ.get("CI") else ""
    )
    if not url:
        pytest.skip(
            "PostgreSQL tests need ROOST_TEST_DATABASE_URL=postgresql://user:password@host/db "
            "(a database the user may create schemas in; `make postgres` sets one up)"
        )
    return url


def _postgres(base_url: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(base_url, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema of the test server's
    database, dropped after the test; skipped without a server (see _postgres_base_url)."""
    base = _postgres_base_url()
    schema = f"roost_test_{secrets.token_hex(6)}"
    _postgres(base, f"CREATE SCHEMA {schema}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}search_path={schema}"
    finally:
        _postgres(base, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if request.config.getoption("--store") == "postgres":
        url = request.getfixturevalue("postgres_url")
        return make_settings(tmp_path / "data", database_url=url)
    return make_settings(tmp_path / "data")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bus",
        choices=("local", "wire", "nats"),
        default="local",
        help="the bus of the `server` fixture: the in-process one, tests/wire_bus.py's, which "
        "carries every message to it as bytes (the shape of a NATS bus), or the NATS bus on a "
        "nats-server of the run (tests/nats_server.py)",
    )
    parser.addoption(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the store of the `server` fixture: SQLite in the test's data dir, or PostgreSQL "
        "(a fresh schema of ROOST_TEST_DATABASE_URL's database)",
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (``CI`` set), a skipped test fails the run: a clone with nothing beside it, on a
    machine .ci/run has set up, must run every test."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not os.environ.get("CI") or exitstatus != pytest.ExitCode.OK:
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped:
        reporter.write_line(f"CI: {len(skipped)} tests were skipped; every test must run here")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def bus_of(config: pytest.Config) -> BusFactory:
    """The bus ``--bus`` names, for Roost(bus=...)."""
    bus = config.getoption("--bus")
    if bus == "nats":
        return session_bus(config)
    return WireBus if bus == "wire" else local_bus


@pytest.fixture
async def server(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Roost]:
    roost = Roost(settings, bus=bus_of(request.config))
    await roost.start()
    try:
        yield roost
    finally:
        await roost.stop()


@pytest.fixture
async def http(server: Roost) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", timeout=10
    ) as client:
        yield client


async def login(http: httpx.AsyncClient, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
    response = await http.post(
        "/oauth/token", data={"grant_type": "password", "username": user, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin_token(http: httpx.AsyncClient) -> str:
    return await login(http)


async def create_device(
    http: httpx.AsyncClient,
    token: str,
    device: str = "dev1",
    credentials: str = "secret1",
    user: str = ADMIN,
) -> dict[str, Any]:
    response = await http.post(
        f"/v1/users/{user}/devices",
        json={"device": device, "credentials": credentials, "name": device},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


DeviceFactory = Callable[..., Awaitable[Device]]


def sdk_device(
    server: Roost,
    name: str = "dev1",
    protocol: ProtocolName = "legacy",
    user: str = ADMIN,
    credentials: str = "secret1",
    **options: Any,
) -> Device:
    """An SDK device for ``server``'s plain port of ``protocol``, not started yet."""
    port = server.device_port if protocol == "legacy" else server.iotmp_port
    return Device(
        user=user,
        device=name,
        credentials=credentials,
        port=port,
        protocol=protocol,
        reconnect_delay=0.2,
        **options,
    )


@pytest.fixture
async def connect_device(server: Roost) -> AsyncIterator[DeviceFactory]:
    """Start SDK devices against the server; all are stopped at the end of the test."""
    started: list[Device] = []

    async def connect(
        device: Device | None = None,
        *,
        user: str = ADMIN,
        name: str = "dev1",
        credentials: str = "secret1",
        wait: bool = True,
    ) -> Device:
        if device is None:
            device = sdk_device(server, name, user=user, credentials=credentials)
        started.append(device)
        await device.start()
        if wait:
            await device.wait_connected(5)
        return device

    yield connect
    for device in started:
        await device.stop()


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test past ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def wait_offline(http: httpx.AsyncClient, token: str, device: str, user: str = ADMIN) -> None:
    async def offline() -> bool:
        response = await http.get(f"/v1/users/{user}/devices/{device}/stats", headers=bearer(token))
        return response.json()["connected"] is False

    await wait_for(offline)
