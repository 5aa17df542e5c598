"""PostgreSQL briefly unavailable: calls that need it answer 503 at once rather than hang, and
work again by themselves once it is back. The server is put out of reach through a TCP proxy
this test owns (severing every connection, then refusing or swallowing new ones), so the shared
PostgreSQL is never stopped."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.errors import Unavailable
from roost.store.base import User
from roost.store.postgres import PostgresStore

from conftest import ADMIN, bearer, login, make_settings
from pg_proxy import Proxy, proxy  # noqa: F401


async def test_the_api_answers_503_while_postgresql_is_down_and_recovers(
    tmp_path: Path,
    proxy: tuple[Proxy, str],  # noqa: F811
) -> None:
    gate, url = proxy
    roost = Roost(make_settings(tmp_path / "data", database_url=url))
    await roost.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{roost.http_port}", timeout=30
        ) as http:
            token = await login(http)
            devices = f"/v1/users/{ADMIN}/devices"
            assert (await http.get(devices, headers=bearer(token))).status_code == 200

            await gate.stop()  # PostgreSQL goes away: connections cut, new ones refused
            down = await http.get(devices, headers=bearer(token))
            assert down.status_code == 503, down.text
            assert "error" in down.json()
            again = await http.post(
                "/oauth/token", data={"grant_type": "password", "username": ADMIN, "password": "x"}
            )
            assert again.status_code == 503, again.text

            await gate.start()  # back on the same address: the pool reconnects by itself
            up = await http.get(devices, headers=bearer(token))
            assert up.status_code == 200, up.text
    finally:
        await roost.stop()


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout(
    proxy: tuple[Proxy, str],  # noqa: F811
) -> None:
    gate, url = proxy
    store = PostgresStore(url, timeout=0.5)
    await store.open()
    try:
        await store.create_user(User("alice", "h", "user", 1))
        await gate.stop()
        gate.black_hole = True
        await gate.start()  # pooled connections cut; new ones accepted and never answered
        with pytest.raises(Unavailable):
            await store.get_user("alice")
        with pytest.raises(Unavailable):  # also when a connection is taken from a full pool
            await asyncio.gather(*(store.get_user("alice") for _ in range(20)))
        await gate.stop()
        gate.black_hole = False
        await gate.start()
        assert await store.get_user("alice") == User("alice", "h", "user", 1)
    finally:
        with contextlib.suppress(Unavailable):
            await store.close()


async def test_two_nodes_starting_together_on_an_empty_database_both_start(
    tmp_path: Path, postgres_url: str
) -> None:
    """They migrate once and make one first admin (the slower one finds it made)."""
    nodes = [
        Roost(make_settings(tmp_path / f"node{n}", database_url=postgres_url)) for n in range(2)
    ]
    await asyncio.gather(*(node.start() for node in nodes))
    try:
        for node in nodes:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{node.http_port}", timeout=30
            ) as http:
                assert await login(http)
        assert await nodes[0].services.store.count_users() == 1
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))
