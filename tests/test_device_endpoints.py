"""Devices calling their user's endpoints (legacy flag 8, IOTMP service 4) with the SDK device over
both protocols: the call data is the device's payload, a confirmation comes once the target
answered 2xx, a refusal is answered, and the result is announced with the device's id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.config import Settings
from roost.device.client import ProtocolName

from conftest import DeviceFactory, bearer, create_device, make_settings, sdk_device
from endpoint_target import (
    ENDPOINTS,
    Reply,
    create_endpoint,
    events_url,
    receive,
    running_target,
    subscribe,
)

PROTOCOLS: list[ProtocolName] = ["legacy", "iotmp"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data", endpoints_allow_private=True, endpoints_retries=0, endpoints_timeout=5
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_device_calls_an_endpoint_with_its_payload(
    protocol: ProtocolName,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    await create_device(http, admin_token)
    device = await connect_device(sdk_device(server, protocol=protocol))
    async with running_target() as target, connect(events_url(server, admin_token)) as ws:
        url = target.url + "/alert?t={{temperature}}"
        await create_endpoint(http, admin_token, "alert", {"url": url})
        await subscribe(ws, {"event": "endpoint_call_response", "endpoint": "alert"})
        data = {"temperature": 31.5, "room": "kitchen"}
        assert await device.call_endpoint("alert", data, confirm=True)
        got = target.received.get_nowait()  # delivered before the confirmation
        assert (got.method, got.target) == ("POST", "/alert?t=31.5")
        assert json.loads(got.body) == data
        event = await receive(ws)
        assert (event["endpoint"], event["device"], event["status"]) == ("alert", "dev1", 200)
        # without a confirmation asked for, the call is made all the same
        assert await device.call_endpoint("alert", {"temperature": 12})
        assert (await receive(ws))["device"] == "dev1"
        assert target.received.get_nowait().target == "/alert?t=12"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_calls_that_fail_are_answered_not_left_waiting(
    protocol: ProtocolName,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    await create_device(http, admin_token)
    device = await connect_device(sdk_device(server, protocol=protocol))
    async with running_target(Reply(500, b"down")) as target:
        await create_endpoint(http, admin_token, "broken", {"url": target.url})
        assert not await device.call_endpoint("broken", {"a": 1}, confirm=True)
        assert target.received.qsize() == 1  # tried, and failed
    await create_endpoint(http, admin_token, "off", {"url": target.url}, enabled=False)
    body = {"endpoint": "mail", "type": "email", "config": {"recipient": "a@example.com"}}
    created = await http.post(ENDPOINTS, json=body, headers=bearer(admin_token))
    assert created.status_code == 200
    for refused in ("absent", "off", "mail", "bad id!"):
        assert not await device.call_endpoint(refused, {"a": 1}, confirm=True), refused
    assert device.is_connected
