"""What one WebSocket may hold: max_stream_subscriptions watches, all given back on close."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from roost.app import Roost
from roost.bus.base import DeviceKey
from roost.config import Settings
from roost.device import Device
from roost.device.resources import Resource

from conftest import ADMIN, DeviceFactory, create_device, make_settings, sdk_device, wait_for

KEY = DeviceKey(ADMIN, "dev1")
LIMIT = 8
RESOURCES = [f"r{i}" for i in range(LIMIT + 1)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_stream_subscriptions=LIMIT)


@pytest.fixture
async def resources(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> dict[str, Resource]:
    """dev1, connected, with one more output than a socket may watch."""
    await create_device(http, admin_token)
    device: Device = sdk_device(server)
    outputs = {name: device.output(name, lambda: 1) for name in RESOURCES}
    await connect_device(device)
    return outputs


@pytest.fixture
def socket_url(server: Roost, admin_token: str) -> str:
    return (
        f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
        f"?authorization={admin_token}"
    )


async def watch(ws: ClientConnection, resource: str, enabled: bool = True) -> None:
    await ws.send(json.dumps({"resource": resource, "interval": 1, "enabled": enabled}))


async def reply_about(ws: ClientConnection, resource: str) -> dict[str, object]:
    """The next frame about ``resource`` (data or error), skipping the others."""
    while True:
        frame: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame.get("resource") == resource:
            return frame


async def test_a_subscription_past_the_limit_gets_an_error_frame(
    server: Roost, resources: dict[str, Resource], socket_url: str
) -> None:
    async with connect(socket_url) as ws:
        for name in RESOURCES[:LIMIT]:
            await watch(ws, name)
            assert "out" in await reply_about(ws, name)
        extra = RESOURCES[LIMIT]
        await watch(ws, extra)
        refused = await reply_about(ws, extra)
        assert refused == {
            "resource": extra,
            "error": {"message": f"at most {LIMIT} resources can be watched on one connection"},
        }
        assert not resources[extra].streams  # the device was not asked
        await watch(ws, RESOURCES[0], enabled=True)  # retuning a watched one is not one more
        assert "out" in await reply_about(ws, RESOURCES[0])
        await watch(ws, RESOURCES[0], enabled=False)  # one given back: room for another
        await watch(ws, extra)
        assert "out" in await reply_about(ws, extra)


async def test_closing_a_socket_gives_back_every_subscription(
    server: Roost, resources: dict[str, Resource], socket_url: str
) -> None:
    assert server.services is not None
    hub = server.services.gateway.streams
    async with connect(socket_url) as ws:
        for name in RESOURCES[:LIMIT]:
            await watch(ws, name)
            assert "out" in await reply_about(ws, name)
        assert hub.device_streams(KEY) == LIMIT
        assert sum(len(r.streams) for r in resources.values()) == LIMIT

    async def released() -> bool:  # the device was told to stop, the hub holds nothing of dev1
        device_streams = sum(len(r.streams) for r in resources.values())
        return device_streams == 0 and hub.resources_held(KEY) == 0

    await wait_for(released)
    assert hub.device_streams(KEY) == 0
