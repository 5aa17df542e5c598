"""Replay the captured sessions of the official clients against Roost, byte for byte.

A raw socket plays the official device: it sends exactly the bytes the device sent. The test
drives Roost through its REST API and WebSockets in the order the scripted listener of the
capture did, and every frame Roost puts on the wire must equal, byte for byte, the frame the
listener sent (Roost numbers its requests 1, 2, 3... as the listener did).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.store.base import User

from conftest import bearer
from vectors import load_frames

BASE = "/v2/users/alice/devices/dev1"
Action = Callable[[], Awaitable[Any]]


class Driver:
    """What the capture's listener did, as Roost API calls (each started, not awaited)."""

    def __init__(self, server: Roost, http: httpx.AsyncClient, token: str) -> None:
        self.server, self.http, self.token = server, http, token
        self.calls: list[asyncio.Task[httpx.Response]] = []
        self.ws: ClientConnection | None = None

    def get(self, resource: str) -> None:
        self._call(self.http.get(f"{BASE}/{resource}", headers=bearer(self.token)))

    def post(self, resource: str, value: Any) -> None:
        self._call(
            self.http.post(f"{BASE}/{resource}", json={"in": value}, headers=bearer(self.token))
        )

    def _call(self, request: Awaitable[httpx.Response]) -> None:
        self.calls.append(asyncio.ensure_future(request))

    async def watch(self, resource: str, interval: float, enabled: bool = True) -> None:
        if self.ws is None:
            self.ws = await connect(
                f"ws://127.0.0.1:{self.server.http_port}/v3/users/alice/devices/dev1/resources"
                f"?authorization={self.token}"
            )
        await self.ws.send(
            json.dumps({"resource": resource, "interval": interval, "enabled": enabled})
        )


LEGACY_STEPS: dict[str, Callable[[Driver], Any]] = {
    "read output 'temperature'": lambda d: d.get("temperature"),
    "read output 'location'": lambda d: d.get("location"),
    "describe all resources (resource ['api'])": lambda d: d.get("api"),
    "describe one input ('relay','api')": lambda d: d.get("relay/api"),
    "describe one in/out ('io','api')": lambda d: d.get("io/api"),
    "write input 'relay' = true": lambda d: d.post("relay", True),
    "call in/out 'io' with {value1:3,value2:4}": lambda d: d.post("io", {"value1": 3, "value2": 4}),
    "run 'reset'": lambda d: d.get("reset"),
    "unknown resource 'nope'": lambda d: d.get("nope"),
    "START_STREAM 'temperature' every 2000 ms": lambda d: d.watch("temperature", 2),
    "START_STREAM 'relay' (events only, no interval)": lambda d: d.watch("relay", 0),
    "write input 'relay' = false (streamed relay -> expect STREAM_EVENT on 11)": lambda d: d.post(
        "relay", False
    ),
    "STOP_STREAM 'temperature'": lambda d: d.watch("temperature", 0, enabled=False),
    "STOP_STREAM 'relay'": lambda d: d.watch("relay", 0, enabled=False),
}
IOTMP_STEPS: dict[str, Callable[[Driver], Any]] = {
    "RUN 'temperature'": lambda d: d.get("temperature"),
    "RUN 'location'": lambda d: d.get("location"),
    "DESCRIBE (all resources)": lambda d: d.get("api"),
    "DESCRIBE 'relay'": lambda d: d.get("relay/api"),
    "DESCRIBE 'io'": lambda d: d.get("io/api"),
    "RUN 'relay' payload true": lambda d: d.post("relay", True),
    "RUN 'io' payload {value1:3,value2:4}": lambda d: d.post("io", {"value1": 3, "value2": 4}),
    "RUN 'reset'": lambda d: d.get("reset"),
    "RUN unknown 'nope'": lambda d: d.get("nope"),
    "START_STREAM 'temperature' params {interval:2000}": lambda d: d.watch("temperature", 2),
    "START_STREAM 'relay' (no interval)": lambda d: d.watch("relay", 0),
    "RUN 'relay' payload false": lambda d: d.post("relay", False),
    "STOP_STREAM 10": lambda d: d.watch("temperature", 0, enabled=False),
    "STOP_STREAM 11": lambda d: d.watch("relay", 0, enabled=False),
}
# What the capture's listener did that Roost never does: write into an input's stream, and open
# a second (event) stream on a resource that already has one (Roost shares one per resource).
IOTMP_SKIPPED = {
    "STREAM_DATA into relay stream (input true)",
    "START_STREAM 'temperature' (no interval, event stream)",
    "STOP_STREAM 13",
}
REACTIONS = {"auth accepted (REQUEST_OK)", "keep-alive answer", "connect accepted (OK)"}


@pytest.mark.parametrize(
    ("vectors", "steps", "skipped"),
    [
        ("legacy_session.json", LEGACY_STEPS, set()),
        ("iotmp_session.json", IOTMP_STEPS, IOTMP_SKIPPED),
    ],
    ids=["legacy", "iotmp"],
)
async def test_replay_is_byte_exact(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    vectors: str,
    steps: dict[str, Callable[[Driver], Any]],
    skipped: set[str],
) -> None:
    frames = load_frames(vectors)
    assert server.services is not None
    now = int(time.time() * 1000)
    await server.services.store.create_user(User("alice", hash_password("alice-pw"), "user", now))
    created = await http.post(
        "/v1/users/alice/devices",
        json={"device": "dev1", "credentials": "secret1"},
        headers=bearer(admin_token),
    )
    assert created.status_code == 200
    port = server.device_port if vectors.startswith("legacy") else server.iotmp_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    driver = Driver(server, http, admin_token)
    matched = 0
    for frame in frames:
        data = bytes.fromhex(frame["hex"])
        if frame["from"] == "device":
            writer.write(data)
            await writer.drain()
            continue
        if frame["note"] in skipped:
            continue
        if frame["note"] not in REACTIONS:
            started = steps[frame["note"]](driver)
            if started is not None:
                await started
        sent = await asyncio.wait_for(reader.readexactly(len(data)), 5)
        assert sent == data, f"{frame['note']}: sent {sent.hex(' ')}, captured {frame['hex']}"
        matched += 1
    assert matched == len(steps) + len(REACTIONS & {f["note"] for f in frames})

    responses = [await call for call in driver.calls]
    bodies = [(r.status_code, r.content) for r in responses]
    assert bodies[0] == (200, b'{"out":23.5}')
    assert bodies[1] == (200, b'{"out":{"lat":40.4168,"lon":-3.7038}}')
    assert json.loads(bodies[2][1])["io"]["fn"] == 4
    assert bodies[3] == (200, b'{"in":false}')
    assert bodies[5] == (200, b"")
    assert json.loads(bodies[6][1]) == {"out": {"sum": 7, "mult": 12}}
    assert bodies[7] == (200, b"")
    assert bodies[8][0] == 404
    assert driver.ws is not None
    seen = []
    while True:
        try:
            seen.append(json.loads(await asyncio.wait_for(driver.ws.recv(), 0.5)))
        except TimeoutError:
            break
    assert {"resource": "temperature", "out": 23.5} in seen
    await driver.ws.close()
    writer.close()
