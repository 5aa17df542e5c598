"""A real Roost on its own event loop in a thread, for the synchronous schemathesis runs
(test_api_fuzz.py, test_token_fuzz.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import uvloop

from roost.app import Roost

from conftest import make_settings


class LiveServer:
    """A Roost serving on a free port from a thread of its own, until :meth:`stop`."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.settings = make_settings(data_dir, **overrides)
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="roost-fuzz", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"the server did not start: {self._failure!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            uvloop.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        roost = Roost(self.settings)
        await roost.start()
        self.port = roost.http_port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await roost.stop()
