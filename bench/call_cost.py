"""The Python cost of one HTTP request through Roost's own HTTP protocol and API, without sockets.

    python -m bench.call_cost [--smoke]

A real server is started (its store, tokens and routes), then requests are fed straight into one
instance of its HTTP protocol over a transport that only records what is written; the device
behind the resource call is a session whose link answers every request at the next loop step,
with no wire codec. What is left is the per-request Python of uvicorn's protocol, the routing,
the token check and the session's bookkeeping: the part of an rpc that this code controls. It
varies far less than the end-to-end figures of ``bench.run`` (no kernel, no other process), so
it is the figure to compare two versions of the code by. Prints microseconds per request for
``hello`` and ``rpc`` (the best of 5 passes), and as its LAST line one JSON object.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.bus.base import DeviceKey, Operation
from roost.config import Settings
from roost.devices.session import DeviceSession
from roost.store.base import User
from roost.wire.pson import PsonValue

USER, DEVICE = "bench", "d0"
PASSES = 5
REQUESTS = 20000  # per pass


class Recorder:
    """The part of a transport uvicorn's protocol uses; keeps the last write."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 80), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class AnsweringLink:
    """A device that answers 21.5 to every request, at the next loop step."""

    session: DeviceSession

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def send_request(
        self, stream_id: int, op: Operation, path: tuple[str, ...], payload: PsonValue
    ) -> None:
        self._loop.call_soon(self.session.resolve, stream_id, True, 21.5)

    def kind(self) -> tuple[str, bool]:
        return "iotmp", False

    def close(self, reason: str) -> None:
        pass


async def measure(requests: int = REQUESTS) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="roost-cost-") as tmp:
        ports = ("http_port", "device_port", "iotmp_port", "https_port", "device_tls_port")
        settings = dataclasses.replace(
            Settings(data_dir=Path(tmp)),
            host="127.0.0.1",
            admin_password="bench-admin-password",
            iotmp_tls_port=0,
            **dict.fromkeys(ports, 0),
        )
        roost = Roost(settings)
        await roost.start()
        try:
            return await _measure(roost, requests)
        finally:
            await roost.stop()


async def _measure(roost: Roost, requests: int) -> dict[str, float]:
    services = roost.services
    assert services is not None
    loop = asyncio.get_running_loop()
    await services.store.create_user(User(USER, hash_password("bench-password"), "user", 0))
    link = AnsweringLink(loop)
    link.session = DeviceSession(
        DeviceKey(USER, DEVICE), link, "127.0.0.1", 0, loop, services.registry
    )
    services.registry.add(link.session)
    token = services.signer.access_token(USER, int(time.time()))
    server = roost._http[0][0]  # the uvicorn server of the plain HTTP port
    paths = {"hello": "/v1/server/healthcheck", "rpc": f"/v2/users/{USER}/devices/{DEVICE}/temp"}
    result = {}
    for name, path in paths.items():
        head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
        seconds = await _seconds_per_request(server, head.encode(), requests)
        result[f"{name}_us"] = round(seconds * 1e6, 2)
    return result


async def _seconds_per_request(server: Any, request: bytes, requests: int) -> float:
    """The best of PASSES passes of ``requests`` requests on one connection, one at a time."""
    protocol = server.config.http_protocol_class(
        config=server.config, server_state=server.server_state, app_state={}
    )
    transport = Recorder()
    protocol.connection_made(transport)

    async def one() -> None:
        before = transport.writes
        protocol.data_received(request)
        while transport.writes == before:
            await asyncio.sleep(0)

    for _ in range(1000):  # warm-up, and a check of the answer
        await one()
    if transport.closed or not transport.last.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"unexpected answer {transport.last[:80]!r}")
    best = float("inf")
    for _ in range(PASSES):
        started = time.perf_counter()
        for _ in range(requests):
            await one()
        best = min(best, (time.perf_counter() - started) / requests)
    protocol.connection_lost(None)
    return best


def main() -> None:
    smoke = sys.argv[1:] == ["--smoke"]  # a few hundred requests: keeps the harness honest
    result = uvloop.run(measure(200 if smoke else REQUESTS))
    for name in ("hello", "rpc"):
        print(f"{name:6} {result[f'{name}_us']:7.2f} us per request (no sockets)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
