"""Live resource streams over real WebSockets, from SDK devices over both protocols."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from roost.app import Roost
from roost.bus.base import DeviceKey
from roost.device import Device
from roost.device.resources import Resource

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device, wait_for

KEY = DeviceKey(ADMIN, "dev1")


class Sensor:
    def __init__(self) -> None:
        self.reads = 0
        self.relay = False
        self.temperature: Resource | None = None

    def attach(self, device: Device) -> Device:
        self.temperature = device.output("temperature", self._read)
        device.input("relay", self._set_relay, getter=lambda: self.relay)
        return device

    def _read(self) -> int:
        self.reads += 1
        return self.reads

    def _set_relay(self, value: Any) -> None:
        self.relay = bool(value)


@pytest.fixture(params=["legacy", "iotmp"])
async def device(
    request: pytest.FixtureRequest,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> tuple[Device, Sensor]:
    await create_device(http, admin_token)
    sensor = Sensor()
    dev = await connect_device(sensor.attach(sdk_device(server, protocol=request.param)))
    return dev, sensor


@pytest.fixture
async def socket_url(server: Roost, admin_token: str) -> str:
    return (
        f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
        f"?authorization={admin_token}"
    )


async def frames(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Every frame received within ``seconds``."""
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return received


@pytest.fixture
async def sockets(socket_url: str) -> AsyncIterator[list[ClientConnection]]:
    opened: list[ClientConnection] = []
    yield opened
    for ws in opened:
        await ws.close()


async def watch(
    url: str, opened: list[ClientConnection], resource: str, interval: float
) -> ClientConnection:
    ws = await connect(url)
    opened.append(ws)
    await ws.send(json.dumps({"resource": resource, "interval": interval, "enabled": True}))
    return ws


async def test_watchers_share_one_device_stream(
    device: tuple[Device, Sensor], socket_url: str, sockets: list[ClientConnection]
) -> None:
    dev, sensor = device
    fast = await watch(socket_url, sockets, "temperature", 1)
    first = await frames(fast, 1.2)
    assert first and first[0]["resource"] == "temperature"
    slow = await watch(socket_url, sockets, "temperature", 3)
    fast_frames, slow_frames = await asyncio.gather(frames(fast, 3.6), frames(slow, 3.6))
    assert dev.start_stream_count == 1  # one device stream, at the faster interval
    assert sensor.temperature is not None
    assert [s.interval_ms for s in sensor.temperature.streams.values()] == [1000]
    fast_values = [f["out"] for f in fast_frames]
    slow_values = [f["out"] for f in slow_frames]
    assert len(fast_values) >= 3
    assert 1 <= len(slow_values) <= 2  # thinned to one sample per 3 s
    assert set(slow_values) <= set(fast_values)  # the same samples, fewer of them


async def test_last_watcher_leaving_stops_the_device_stream(
    device: tuple[Device, Sensor], socket_url: str, server: Roost
) -> None:
    _, sensor = device
    assert sensor.temperature is not None and server.services is not None
    hub = server.services.gateway.streams
    first = await connect(socket_url)
    second = await connect(socket_url)
    for ws in (first, second):
        await ws.send(json.dumps({"resource": "temperature", "interval": 1, "enabled": True}))
        assert (await frames(ws, 1.5))[0]["resource"] == "temperature"
    await first.close()
    await asyncio.sleep(0.3)
    assert sensor.temperature.streams  # one watcher left: still streaming
    await second.send(json.dumps({"resource": "temperature", "enabled": False}))

    async def stopped() -> bool:
        return not sensor.temperature.streams and hub.device_streams(KEY) == 0  # type: ignore[union-attr]

    await wait_for(stopped)
    await frames(second, 0.5)  # what was already on its way
    assert await frames(second, 1.5) == []
    await second.close()


async def test_streams_resume_after_the_device_reconnects(
    device: tuple[Device, Sensor],
    socket_url: str,
    sockets: list[ClientConnection],
    server: Roost,
) -> None:
    dev, _ = device
    ws = await watch(socket_url, sockets, "temperature", 1)
    assert (await frames(ws, 1.5))[0]["resource"] == "temperature"
    assert server.services is not None
    session = server.services.registry.get(KEY)
    assert session is not None
    session.link.close("test: drop the device")
    seen = await frames(ws, 3)
    notices = [f for f in seen if "connected" in f]
    assert {"device": "dev1", "connected": False} in notices
    assert {"device": "dev1", "connected": True} in notices
    after = seen[seen.index({"device": "dev1", "connected": True}) :]
    assert any(f.get("resource") == "temperature" for f in after)  # resumed, nothing asked
    assert dev.start_stream_count == 2


# IOTMP-Linux, which the SDK follows, does not echo input writes on a stream (protocol.md 3.7)
@pytest.mark.parametrize("device", ["legacy"], indirect=True)
async def test_input_writes_reach_watchers_at_once(
    device: tuple[Device, Sensor],
    server: Roost,
    admin_token: str,
    sockets: list[ClientConnection],
) -> None:
    _, sensor = device
    url = (
        f"ws://127.0.0.1:{server.http_port}/v2/users/{ADMIN}/devices/dev1"
        f"?authorization={admin_token}"
    )
    ws = await watch(url, sockets, "relay", 0)
    assert {"resource": "relay", "in": False} in await frames(ws, 1)  # the state at start
    await ws.send(json.dumps({"resource": "relay", "in": True}))
    assert await frames(ws, 1) == [{"resource": "relay", "in": True}]
    assert sensor.relay is True


async def test_firmware_events_reach_watchers_at_once(
    device: tuple[Device, Sensor], socket_url: str, sockets: list[ClientConnection]
) -> None:
    dev, _ = device
    ws = await watch(socket_url, sockets, "temperature", 0)  # events only
    await frames(ws, 0.5)
    started = time.monotonic()
    assert await dev.stream("temperature")
    frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
    assert frame["resource"] == "temperature" and isinstance(frame["out"], int)
    assert time.monotonic() - started < 1


async def test_slow_watcher_is_bounded(device: tuple[Device, Sensor], server: Roost) -> None:
    from roost.devices.streams import Outbox, Watcher

    assert server.services is not None
    hub = server.services.gateway.streams
    outbox = Outbox(limit=3)  # a client that never reads
    watcher = Watcher(0, outbox)
    for i in range(10):
        hub.stream_data(KEY, ("temperature",), {"out": i}, False)
    hub.watch(KEY, ("temperature",), watcher)
    for i in range(10):
        hub.stream_data(KEY, ("temperature",), {"out": i}, True)
    assert outbox.dropped == 7
    assert [f["out"] for f in await outbox.take()] == [7, 8, 9]  # the newest survive
    hub.unwatch(KEY, ("temperature",), watcher)


async def test_bad_messages_get_error_frames(
    device: tuple[Device, Sensor], socket_url: str, sockets: list[ClientConnection]
) -> None:
    ws = await connect(socket_url)
    sockets.append(ws)
    for message in (
        "{",
        "[]",
        '{"resource": 5}',
        '{"resource": "t", "interval": -1}',
        '{"resource": "t", "enabled": "yes"}',
        '{"resource": "a//b"}',
    ):
        await ws.send(message)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["error"]["message"], message
    # the socket still works
    await ws.send(json.dumps({"resource": "temperature", "interval": 1}))
    assert (await frames(ws, 1.5))[0]["resource"] == "temperature"


async def test_socket_needs_a_token_for_that_device(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    base = f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices"
    with pytest.raises(InvalidStatus) as missing:
        await connect(f"{base}/dev1/resources")
    assert missing.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as unknown:
        await connect(f"{base}/ghost/resources?authorization={admin_token}")
    assert unknown.value.response.status_code == 404
    limited = (
        await http.post(
            f"/v1/users/{ADMIN}/devices/dev1/tokens",
            json={"token_name": "t", "token_resources": ["relay"]},
            headers=bearer(admin_token),
        )
    ).json()["token"]
    async with connect(f"{base}/dev1/resources?authorization={limited}") as ws:
        await ws.send(json.dumps({"resource": "temperature", "interval": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply["resource"] == "temperature" and reply["error"]["message"]


async def test_tokens_in_websocket_urls_stay_out_of_the_logs(
    device: tuple[Device, Sensor],
    socket_url: str,
    admin_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(socket_url) as ws:
        await ws.send(json.dumps({"resource": "temperature", "interval": 1}))
        assert (await frames(ws, 1.5))[0]["resource"] == "temperature"
    # what the server logged (the test's own client logs its request line too)
    server_lines = [
        r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "roost"))
    ]
    assert any("WebSocket" in line for line in server_lines)  # it did log the connection...
    assert not [
        line for line in server_lines if admin_token.split(".")[2] in line
    ]  # ...not the token
