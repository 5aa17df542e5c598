"""Budgets of failed authentications held by two real `roost serve` nodes together (one
nats-server, one SQLite file or PostgreSQL database): wrong passwords and wrong device tokens
spread over both nodes use one budget, so that past it both nodes refuse, where each alone would
still have let the right ones in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from roost.device import Device
from roost.device.client import ProtocolName

from conftest import ADMIN, ADMIN_PASSWORD, create_device, login
from nats_server import NatsServer, nats_server  # noqa: F401
from served_node import stop_all
from test_multinode import Node, database, until  # noqa: F401

BUDGET = 4  # failures per budget, on both nodes together; each node gets half of them
LIMITS = {
    "ROOST_AUTH_FAILURE_WINDOW": "600",  # no failure leaves the window during a test
    "ROOST_LOGIN_FAILURES_PER_USER": str(BUDGET),
    "ROOST_DEVICE_AUTH_FAILURES_PER_ADDRESS": str(BUDGET),
}


@pytest.fixture
async def nodes(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    database: str | None,  # noqa: F811
) -> AsyncIterator[tuple[Node, Node]]:
    data = tmp_path / "data"
    a = Node("a", data, nats_server.url, tmp_path, database, LIMITS)
    started = [a]
    try:
        await a.ready()  # the first makes the admin and the keys; the second finds them
        b = Node("b", data, nats_server.url, tmp_path, database, LIMITS)
        started.append(b)
        await b.ready()
        yield a, b
    finally:
        await stop_all(started)


async def password_grant(node: Node, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": ADMIN, "password": password}
    return await node.http.post("/oauth/token", data=form)


async def test_wrong_passwords_on_both_nodes_spend_one_budget(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    for node in (a, b) * (BUDGET // 2):
        assert (await password_grant(node, "wrong-password")).status_code == 401

    async def refused(node: Node) -> bool:  # the right password (harmless to the budget)
        return (await password_grant(node, ADMIN_PASSWORD)).status_code == 429

    for node in (a, b):  # each saw only half of the failures, yet both refuse now
        await until(partial(refused, node))
        locked = await password_grant(node, ADMIN_PASSWORD)
        assert locked.status_code == 429
        assert 1 <= int(locked.headers["Retry-After"]) <= 600
        assert locked.json()["error"]["message"].startswith("too many failed attempts")


async def device_attempt(node: Node, credentials: str, protocol: ProtocolName) -> bool:
    """One authentication of dev1 on ``node``'s port of ``protocol``: whether it was let in."""
    port = node.ports["device" if protocol == "legacy" else "iotmp"]
    device = Device(
        user=ADMIN,
        device="dev1",
        credentials=credentials,
        port=port,
        protocol=protocol,
        reconnect_delay=600,  # one attempt only
    )
    await device.start()
    try:
        deadline = time.monotonic() + 10
        while not device.connect_count and not device.auth_failures:
            assert time.monotonic() < deadline, f"no answer from node {node.name}"
            await asyncio.sleep(0.02)
    finally:
        await device.stop()
    return device.connect_count > 0


async def test_wrong_device_tokens_on_both_nodes_spend_one_budget(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    await create_device(a.http, await login(a.http), "dev1", "secret1")
    assert await device_attempt(b, "secret1", "iotmp")  # the right token is let in, then:
    tries: list[tuple[Node, ProtocolName]] = [(a, "legacy"), (b, "iotmp"), (a, "iotmp")]
    tries.append((b, "legacy"))
    for node, protocol in tries:  # wrong tokens, over both nodes and both protocols
        assert not await device_attempt(node, "not-the-secret", protocol)

    async def refused(node: Node, protocol: ProtocolName) -> bool:
        return not await device_attempt(node, "secret1", protocol)

    for node, protocol in tries:  # both nodes refuse the right token from this address now
        await until(partial(refused, node, protocol))
