"""Server events (thinger-api.md 2.19) over real WebSockets, from SDK devices over both protocols.

A subscription is known to be in place when the error frame of a bad message sent after it has
come back (a socket handles its messages in order); events of a user arrive in the order they
happened, so a later event that does arrive proves an earlier one was filtered out.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roost.api.events import compile_pattern, matches
from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.config import Settings
from roost.device.client import ProtocolName
from roost.store.base import User

from conftest import ADMIN, DeviceFactory, bearer, create_device, make_settings, sdk_device

CAP = 3  # max_stream_subscriptions in these tests
BAD = {"event": "(device|bucket)_.*"}  # regex syntax beyond names and wildcards: refused


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_stream_subscriptions=CAP)


def events_url(server: Roost, token: str, user: str = ADMIN) -> str:
    return f"ws://127.0.0.1:{server.http_port}/v1/users/{user}/events?authorization={token}"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return frame


async def subscribe(ws: ClientConnection, *subscriptions: dict[str, Any]) -> None:
    """Send the subscriptions; return once the server has handled them."""
    for subscription in subscriptions:
        await ws.send(json.dumps(subscription))
    await ws.send(json.dumps(BAD))
    assert "error" in await receive(ws)


def state(frame: dict[str, Any]) -> tuple[str, str, str]:
    return frame["event"], frame["device"], frame["state"]


@pytest.mark.parametrize("protocol", ["legacy", "iotmp"])
async def test_a_device_connecting_and_leaving_arrives_as_events(
    protocol: ProtocolName,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    await create_device(http, admin_token)
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws, {"event": "device_state_change"})
        before = int(time.time() * 1000)
        device = await connect_device(sdk_device(server, protocol=protocol))
        connected = await receive(ws)
        assert state(connected) == ("device_state_change", "dev1", "connected")
        assert connected["user"] == ADMIN and connected["ts"] >= before
        await device.stop()
        assert state(await receive(ws)) == ("device_state_change", "dev1", "disconnected")


async def test_filters_by_device_state_and_pattern(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    for name in ("dev1", "dev2", "dev3"):
        await create_device(http, admin_token, name)
    url = events_url(server, admin_token)
    async with connect(url) as by_device, connect(url) as by_state, connect(url) as by_name:
        await subscribe(by_device, {"event": "device_.*", "device": "dev2"})
        await subscribe(by_state, {"event": "device_state_change", "state": "disconnected"})
        await subscribe(by_name, {"event": "bucket_.*"}, {"event": "*", "device": "^d*1$"})
        dev1 = await connect_device(name="dev1")
        await connect_device(name="dev2")
        assert state(await receive(by_device)) == ("device_state_change", "dev2", "connected")
        assert state(await receive(by_name)) == ("device_state_change", "dev1", "connected")
        await dev1.stop()
        assert state(await receive(by_state)) == ("device_state_change", "dev1", "disconnected")
        assert state(await receive(by_name)) == ("device_state_change", "dev1", "disconnected")
        # dev1's events did not reach by_device, nor the connections by_state: those come next
        await subscribe(by_device, {"event": "device_state_change", "device": "dev1"})
        dev1 = await connect_device(name="dev1")
        assert state(await receive(by_device))[1:] == ("dev1", "connected")
        assert state(await receive(by_name))[1:] == ("dev1", "connected")
        # the same subscription with "enabled": false removes it
        await subscribe(by_name, {"event": "*", "device": "^d*1$", "enabled": False})
        await subscribe(by_name, {"event": "device_state_change", "device": "dev3"})
        await dev1.stop()
        assert state(await receive(by_state))[1:] == ("dev1", "disconnected")
        await connect_device(name="dev3")
        assert state(await receive(by_name))[1:] == ("dev3", "connected")


async def test_another_users_events_never_arrive(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    assert server.services is not None
    created = int(time.time() * 1000)
    await server.services.store.create_user(
        User("bob", hash_password("bob-password1"), "user", created)
    )
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "bob", "password": "bob-password1"},
    )
    bob = response.json()["access_token"]
    await create_device(http, admin_token)
    await create_device(http, bob, "bobdev", user="bob")
    with pytest.raises(InvalidStatus) as refused:
        await connect(events_url(server, bob, ADMIN))
    assert refused.value.response.status_code == 403
    async with connect(events_url(server, bob, "bob")) as ws:
        await subscribe(ws, {"event": ".*"})
        await connect_device(name="dev1")  # the admin's device
        await connect_device(user="bob", name="bobdev")
        frame = await receive(ws)
        assert (frame["user"], frame["device"]) == ("bob", "bobdev")


async def test_a_revoked_token_closes_its_events_socket(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    body: dict[str, Any] = {"token": "t1", "allow": {"Device": {"*": ["*"]}}}
    response = await http.post(f"/v1/users/{ADMIN}/tokens", json=body, headers=bearer(admin_token))
    no_events = response.json()["access_token"]
    with pytest.raises(InvalidStatus) as refused:
        await connect(events_url(server, no_events))
    assert refused.value.response.status_code == 403
    body = {"token": "t2", "allow": {"User": {"*": ["SubscribeUserEvents"]}}}
    response = await http.post(f"/v1/users/{ADMIN}/tokens", json=body, headers=bearer(admin_token))
    token = response.json()["access_token"]
    async with connect(events_url(server, token)) as ws:
        await subscribe(ws, {"event": ".*"})
        deleted = await http.delete(f"/v1/users/{ADMIN}/tokens/t2", headers=bearer(admin_token))
        assert deleted.status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_subscriptions_are_capped_and_bad_ones_refused(
    server: Roost, admin_token: str
) -> None:
    async with connect(events_url(server, admin_token)) as ws:
        capped = [{"event": "device_state_change", "device": f"d{i}"} for i in range(CAP)]
        await subscribe(ws, *capped)
        await ws.send(json.dumps({"event": "device_state_change", "device": "one_more"}))
        assert "at most 3" in (await receive(ws))["error"]["message"]
        # one made again is no new one: no error frame (the next frame is the next refusal)
        await ws.send(json.dumps(capped[0]))
        for message in (
            {"event": "x" * 65},
            {"device": "dev1"},
            {"event": "device_state_change", "device": ["dev1"]},
            {"event": "device_.+"},
        ):
            await ws.send(json.dumps(message))
            assert (await receive(ws))["error"]["message"]
        await ws.send("not json")
        assert (await receive(ws))["error"]["message"]


async def test_server_events_lists_what_roost_emits(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/server/events")  # public
    assert response.status_code == 200
    listed = {item["event"]: item["filters"] for item in response.json()}
    assert set(listed) == {
        "device_state_change",
        "device_property_update",
        "bucket_export_completed",
        "endpoint_call_response",
    }
    assert {"field": "state", "hints": ["connected", "disconnected"]} in listed[
        "device_state_change"
    ]


def test_patterns_are_names_and_wildcards_matched_in_linear_time() -> None:
    cases = [
        ("device_.*", "device_state_change", True),
        (".*", "anything", True),
        ("*_change", "device_state_change", True),
        ("^dev.$", "dev1", True),
        ("dev.", "dev12", False),
        ("device_state_change", "device_state_changed", False),
        ("*a*b", "xaxxb", True),
    ]
    for pattern, text, expected in cases:
        assert matches(compile_pattern(pattern), text) is expected, (pattern, text)
    # what makes a backtracking regex engine run away is one pass per star here
    assert not matches(compile_pattern("*a*a*a*a*a*a*a*a*a*a*b"), "a" * 20_000)


async def test_property_changes_made_through_the_api_arrive(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)
    properties = f"/v3/users/{ADMIN}/devices/dev1/properties"
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws, {"event": "device_property_update", "property": "cfg"})
        for body in ({"property": "other", "value": 0}, {"property": "cfg", "value": {"a": 1}}):
            response = await http.post(properties, json=body, headers=bearer(admin_token))
            assert response.status_code == 200, response.text
        created = await receive(ws)
        assert (created["event"], created["device"], created["value"]) == (
            "device_property_update",
            "dev1",
            {"a": 1},
        )
        response = await http.put(
            f"{properties}/cfg", json={"value": 7}, headers=bearer(admin_token)
        )
        assert response.status_code == 200, response.text
        assert (await receive(ws))["value"] == 7


@pytest.mark.parametrize("protocol", ["legacy", "iotmp"])
async def test_a_property_set_by_the_device_arrives(
    protocol: ProtocolName,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    await create_device(http, admin_token)
    device = await connect_device(sdk_device(server, protocol=protocol))
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws, {"event": "device_property_update"})
        assert await device.set_property("location", {"lat": 40.4}, confirm=True)
        frame = await receive(ws)
        assert (frame["device"], frame["property"], frame["value"]) == (
            "dev1",
            "location",
            {"lat": 40.4},
        )


async def test_stats_streams_share_the_event_source_but_clients_hear_only_server_events(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    """The stats SSE hears a device's stats as ``device_stats`` events on the bus, the source
    the events socket hears; that internal event never reaches an events socket, even on ``*``."""
    await create_device(http, admin_token)
    url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    headers = {**bearer(admin_token), "Accept": "text/event-stream"}
    async with (
        connect(events_url(server, admin_token)) as ws,
        http.stream("GET", url, headers=headers) as stats,
    ):
        await subscribe(ws, {"event": "*"})
        lines = stats.aiter_lines()
        first = await asyncio.wait_for(anext(lines), 5)
        assert json.loads(first.removeprefix("data: "))["connected"] is False
        device = await connect_device()
        data = ""
        while not data.startswith("data: ") or not json.loads(data[6:])["connected"]:
            data = await asyncio.wait_for(anext(lines), 5)  # heard through the bus's events
        await device.stop()
        seen = [await receive(ws), await receive(ws)]
        assert [state(frame) for frame in seen] == [
            ("device_state_change", "dev1", "connected"),
            ("device_state_change", "dev1", "disconnected"),
        ]
        await subscribe(ws)  # and nothing else was queued before this answer
