"""Client addresses cannot be forged (issue 14, item 5): X-Forwarded-For counts only from a proxy
listed in ``trusted_proxies``, for the login budget, device authentication over ``/iotmp`` and the
logs alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from roost.app import Roost
from roost.config import Settings, load_settings, make_settings
from roost.errors import ConfigError
from roost.wire import iotmp
from roost.wire.iotmp import Message, MessageType

from conftest import ADMIN, ADMIN_PASSWORD, create_device, login
from conftest import make_settings as server_settings

ACCEPTED = bytes.fromhex("01 02 08 07")  # the IOTMP answer to CONNECT with stream id 7
HEALTH_AND_CLOSE = b"GET /v1/server/healthcheck HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    roost = Roost(server_settings(tmp_path / "data", **overrides))
    await roost.start()
    try:
        base_url = f"http://127.0.0.1:{roost.http_port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            yield http
    finally:
        await roost.stop()


async def log_in(http: httpx.AsyncClient, password: str, forwarded_for: str) -> int:
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": ADMIN, "password": password},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


@pytest.mark.parametrize("forwarded_allow_ips", [None, "*"])
async def test_a_rotating_x_forwarded_for_shares_the_budget_of_the_real_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forwarded_allow_ips: str | None
) -> None:
    if forwarded_allow_ips is not None:  # uvicorn's own switch does not turn the header on
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", forwarded_allow_ips)
    async with running(tmp_path, login_failures_per_address=3, login_failures_per_user=0) as http:
        answers = [await log_in(http, "wrong-password", f"10.0.0.{n}") for n in range(1, 5)]
        assert answers == [401, 401, 401, 429]
        assert await log_in(http, ADMIN_PASSWORD, "10.0.0.99") == 429


async def test_a_listed_proxy_is_believed(tmp_path: Path) -> None:
    async with running(
        tmp_path,
        trusted_proxies=("127.0.0.1",),
        login_failures_per_address=3,
        login_failures_per_user=0,
    ) as http:
        answers = [await log_in(http, "wrong-password", "10.0.0.1") for _ in range(4)]
        assert answers == [401, 401, 401, 429]
        # another client behind the proxy has its own budget
        assert await log_in(http, "wrong-password", "10.0.0.2") == 401
        assert await log_in(http, ADMIN_PASSWORD, "10.0.0.2") == 200
        # the rightmost address the proxy did not add itself is the client's
        assert await log_in(http, ADMIN_PASSWORD, "10.0.0.2, 10.0.0.1") == 429


async def iotmp_connect(port: int, credentials: str, forwarded_for: str) -> bytes | None:
    """CONNECT over ``/iotmp``: the server's first answer, or None if it closed without one."""
    headers = {"X-Forwarded-For": forwarded_for}
    async with connect(f"ws://127.0.0.1:{port}/iotmp", additional_headers=headers) as ws:
        hello = Message(MessageType.CONNECT, stream_id=7, payload=[ADMIN, "dev1", credentials])
        await ws.send(iotmp.encode(hello))
        try:
            answer = await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed:
            return None
        return answer if isinstance(answer, bytes) else answer.encode()


async def test_device_auth_failures_over_iotmp_count_against_the_real_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost")
    async with running(tmp_path, device_auth_failures_per_address=2) as http:
        await create_device(http, await login(http))
        port = http.base_url.port
        assert port is not None
        for n in range(2):
            assert await iotmp_connect(port, "wrong", f"10.1.0.{n}") != ACCEPTED
        # the budget of 127.0.0.1 is spent: even the right credentials are refused
        assert await iotmp_connect(port, "secret1", "10.1.0.9") != ACCEPTED
    assert "10.1.0." not in caplog.text  # the logs name the real address
    assert "failed to authenticate from 127.0.0.1" in caplog.text


async def test_the_logged_device_address_is_the_real_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="roost")
    async with running(tmp_path) as http:
        await create_device(http, await login(http))
        port = http.base_url.port
        assert port is not None
        assert await iotmp_connect(port, "secret1", "203.0.113.9") == ACCEPTED
    assert "connected from 127.0.0.1" in caplog.text
    assert "203.0.113.9" not in caplog.text


async def test_a_listed_proxy_has_no_per_address_share_of_pending_connections(
    tmp_path: Path,
) -> None:
    async with running(
        tmp_path, trusted_proxies=("127.0.0.0/8",), http_max_pending_per_address=2
    ) as http:
        port = http.base_url.port
        assert port is not None
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        for _, writer in idle:
            writer.write(
                b"GET /v1/server/healthcheck HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n"
            )
        answers = [await asyncio.wait_for(reader.read(), 5) for reader, _ in idle]
        assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
        for _, writer in idle:
            writer.close()


def test_trusted_proxies_are_a_list_of_addresses_and_networks() -> None:
    assert Settings().trusted_proxies == ()
    env = {"ROOST_TRUSTED_PROXIES": " 10.0.0.5, 192.168.1.7/16 ,::1,"}
    assert load_settings(env=env).trusted_proxies == ("10.0.0.5", "192.168.0.0/16", "::1")
    assert make_settings({"trusted_proxies": ["fd00::/8"]}).trusted_proxies == ("fd00::/8",)
    assert make_settings({"trusted_proxies": ""}).trusted_proxies == ()
    with pytest.raises(ConfigError, match=r"'trusted_proxies': 'proxy\.example' is not an IP"):
        load_settings(env={"ROOST_TRUSTED_PROXIES": "10.0.0.1,proxy.example"})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        make_settings({"trusted_proxies": 5})
