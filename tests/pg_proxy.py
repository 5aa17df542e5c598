"""A TCP proxy a test puts between Roost and PostgreSQL, to make the database go away (cut every
connection, refuse or swallow new ones) without stopping the shared server; and the fixture that
starts one for the test's database (``proxy``: the proxy and the test's URL through it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from ports import free_port


class Proxy:
    """Forwards loopback connections to PostgreSQL until stopped; ``black_hole``: accepts
    connections and never answers (a server that hangs)."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = free_port()  # not the kernel's choice: restarted on it, a client may take it
        self.black_hole = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

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
