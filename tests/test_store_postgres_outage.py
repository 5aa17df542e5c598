"""PostgreSQL briefly unavailable: calls that need it answer 503 at once rather than hang, and
work again by themselves once it is back. The server is put out of reach through a TCP proxy
this test owns (severing every connection, then refusing or swallowing new ones), so the shared
PostgreSQL is never stopped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from roost.app import Roost
from roost.errors import Unavailable
from roost.store.base import User
from roost.store.postgres import PostgresStore

from conftest import ADMIN, bearer, login, make_settings


class Proxy:
    """Forwards loopback connections to PostgreSQL until stopped; ``black_hole``: accepts
    connections and never answers (a server that hangs)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.black_hole = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Refuses new connections and cuts the open ones, as a server going down does."""
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.transport.abort()
            await self._server.wait_closed()
            self._server = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.black_hole:
            await reader.read()  # hold the connection, answer nothing
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.add(up_writer)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the other side was cut: so is this one, below
        finally:
            writer.transport.abort()


@pytest.fixture
async def proxy(postgres_url: str) -> AsyncIterator[tuple[Proxy, str]]:
    """A proxy to the test's PostgreSQL, and the test's URL through it."""
    parts = urlsplit(postgres_url)
    started = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await started.start()
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{started.port}"
    try:
        yield started, urlunsplit(parts._replace(netloc=netloc))
    finally:
        await started.stop()


async def test_the_api_answers_503_while_postgresql_is_down_and_recovers(
    tmp_path: Path, proxy: tuple[Proxy, str]
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
    proxy: tuple[Proxy, str],
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
