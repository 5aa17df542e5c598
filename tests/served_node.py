"""One `roost serve` process of a test: started with its arguments and environment, its log in a
file, a client of its HTTP API; ``ready()`` once the API answers; :func:`stop_all` at the end
stops every node, then checks that no log holds a traceback."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


class ServedNode:
    def __init__(
        self, name: str, args: Sequence[str], env: dict[str, str], log: Path, http_port: int
    ) -> None:
        self.name = name
        self.log = log
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "roost", *args], env=env, stdout=out, stderr=out
            )
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=10)

    async def ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, f"node {self.name} exited: {self.log.read_text()}"
            try:
                if (await self.http.get("/v1/server/events")).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"node {self.name} did not start"
            await asyncio.sleep(0.05)

    async def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        await self.http.aclose()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a test may have stopped it (SIGSTOP)
            self.process.send_signal(how)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def stop_all(nodes: Sequence[ServedNode], how: signal.Signals = signal.SIGINT) -> None:
    """Stop every node (none left running if one fails), then: no traceback in any log."""
    for node in nodes:
        await node.stop(how)
    for node in nodes:
        text = node.log.read_text()
        assert "Traceback" not in text, f"node {node.name}: {text}"
