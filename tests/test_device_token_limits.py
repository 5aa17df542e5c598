"""A device token's resource limit holds on every path (issue 14 item 3).

A real SDK device (both protocols) declares resources whose names collide with the describe
routes, ``api`` and ``api/keys`` (nested), plus ``secret`` and ``temperature``. A token limited to
``temperature`` reaches nothing else by any route, v1 (Starlette's router), v2 and v3 (the direct
path), calls and descriptions alike, and the listings show it only what it may use. The legacy
wire spells a description as a path ending in ``api``, so a legacy device describes where an IOTMP
one calls: such a call is checked as the description it may be.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.device import Device

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device

V1 = f"/v1/users/{ADMIN}/devices/dev1"
V2 = f"/v2/users/{ADMIN}/devices/dev1"
V3 = f"/v3/users/{ADMIN}/devices/dev1/resources"
VALUES = {"temperature": 21, "secret": "SECRET", "api/keys": "KEYS"}


def attach(device: Device) -> Device:
    device.output("temperature", lambda: VALUES["temperature"])
    device.output("secret", lambda: VALUES["secret"])
    device.input_output("api", lambda value: {"api": value}, sample={"api": 0})
    device.output("api/keys", lambda: VALUES["api/keys"])
    return device


@pytest.fixture(params=["legacy", "iotmp"])
async def dev1(
    request: pytest.FixtureRequest,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> str:
    """dev1 connected over each protocol; its protocol's name."""
    await create_device(http, admin_token)
    await connect_device(attach(sdk_device(server, protocol=request.param)))
    protocol: str = request.param
    return protocol


async def limited_to(http: httpx.AsyncClient, admin: str, *resources: str) -> str:
    response = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens",
        json={"token_name": "limited", "token_resources": list(resources)},
        headers=bearer(admin),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


# every route that reaches a resource other than temperature, or describes one
OUT_OF_BOUNDS: list[tuple[str, str, Any]] = [
    ("GET", f"{V3}/api", None),
    ("POST", f"{V3}/api", {"api": 1}),
    ("GET", f"{V3}/api/keys", None),
    ("GET", f"{V3}/secret", None),
    ("GET", f"{V2}/api/keys", None),
    ("POST", f"{V2}/api/keys", {"in": 1}),
    ("GET", f"{V1}/api/keys", None),
    ("GET", f"{V2}/secret", None),
    ("GET", f"{V1}/secret", None),
    ("GET", f"{V2}/api/api", None),  # describes the resource "api"
    ("GET", f"{V2}/api/keys/api", None),
    ("GET", f"{V1}/api/keys/api", None),
    ("GET", f"{V2}/secret/api", None),
]


async def test_a_token_limited_to_one_resource_reaches_no_other(
    http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    token = await limited_to(http, admin_token, "temperature")
    for method, url, body in OUT_OF_BOUNDS:
        response = await http.request(method, url, json=body, headers=bearer(token))
        assert response.status_code == 403, (method, url, response.text)
        assert not any(str(value) in response.text for value in VALUES.values())
    # and the one it was given still works, by each route
    assert (await http.get(f"{V2}/temperature", headers=bearer(token))).json() == {"out": 21}
    assert (await http.get(f"{V1}/temperature", headers=bearer(token))).json() == {"out": 21}
    assert (await http.get(f"{V3}/temperature", headers=bearer(token))).json() == 21
    assert (await http.get(f"{V2}/temperature/api", headers=bearer(token))).status_code == 200


async def test_listings_show_a_limited_token_only_its_resources(
    http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    everything = (await http.get(f"{V2}/api", headers=bearer(admin_token))).json()
    assert set(everything) == {"temperature", "secret", "api"}
    assert set(everything["api"]["/"]) == {"keys"}
    flat = (await http.get(V3, headers=bearer(admin_token))).json()
    assert set(flat) == {"temperature", "secret", "api", "api/keys"}

    token = await limited_to(http, admin_token, "temperature")
    for url in (f"{V2}/api", f"{V1}/api"):
        listed = await http.get(url, headers=bearer(token))
        assert listed.status_code == 200
        assert listed.json() == {"temperature": everything["temperature"]}
    listed = await http.get(V3, headers=bearer(token))
    assert listed.status_code == 200 and listed.json() == {"temperature": flat["temperature"]}


async def test_describe_routes_stay_apart_from_a_resource_named_api(
    http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    session = bearer(admin_token)
    # v3: resources/{r} always calls, "api" included; a legacy device can only describe there
    assert (await http.get(f"{V3}/api/keys", headers=session)).json() == "KEYS"
    called = await http.post(f"{V3}/api", json=7, headers=session)
    assert called.status_code == 200
    if dev1 == "iotmp":
        assert called.json() == {"api": 7}
    else:
        assert set(called.json()) == {"temperature", "secret", "api"}
    # v2: a path ending in "api" always describes; a nested resource under "api" is called
    assert "temperature" in (await http.get(f"{V2}/api", headers=session)).json()
    assert (await http.get(f"{V2}/api/api", headers=session)).json()["in"] == {"api": 0}
    assert (await http.get(f"{V2}/api/keys", headers=session)).json() == {"out": "KEYS"}
    assert (await http.get(f"{V2}/api/keys/api", headers=session)).json() == {"out": "KEYS"}


async def test_a_name_covers_the_resources_nested_under_it(
    http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    parent = await limited_to(http, admin_token, "sensors", "api")
    assert (await http.get(f"{V3}/api/keys", headers=bearer(parent))).json() == "KEYS"
    assert (await http.get(f"{V2}/api/keys", headers=bearer(parent))).json() == {"out": "KEYS"}
    assert (await http.get(f"{V3}/secret", headers=bearer(parent))).status_code == 403
    # "api" itself is what a legacy device answers with its whole listing: never for a list
    assert (await http.get(f"{V3}/api", headers=bearer(parent))).status_code == 403
    assert set((await http.get(V3, headers=bearer(parent))).json()) == {"api/keys"}
    listed = (await http.get(f"{V2}/api", headers=bearer(parent))).json()
    assert set(listed) == {"api"} and set(listed["api"]["/"]) == {"keys"}

    child = await limited_to(http, admin_token, "api/keys")
    assert (await http.get(f"{V3}/api/keys", headers=bearer(child))).json() == "KEYS"
    assert (await http.get(f"{V2}/api/keys/api", headers=bearer(child))).status_code == 200
    for url in (f"{V3}/api", f"{V2}/api/api", f"{V3}/secret"):
        assert (await http.get(url, headers=bearer(child))).status_code == 403, url
    assert (await http.post(f"{V3}/api", json=1, headers=bearer(child))).status_code == 403
    assert set((await http.get(V3, headers=bearer(child))).json()) == {"api/keys"}
    # its parent shows only as the container the token knows by name
    listed = (await http.get(f"{V2}/api", headers=bearer(child))).json()
    assert set(listed) == {"api"}
    assert (listed["api"]["fn"], set(listed["api"]["/"])) == (0, {"keys"})


async def test_a_call_ending_in_api_is_checked_as_the_description_it_may_be(
    http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    """Over the legacy wire a call of ``api`` is the device's whole listing and ``secret/api``
    describes ``secret``: a limited token gets neither, whatever its list names (a path ending
    in ``api`` counts as the path before it, and ``api`` alone as the whole device)."""
    for names in (["api"], ["temperature"], ["secret/api"]):
        token = await limited_to(http, admin_token, *names)
        for method, url in (
            ("GET", f"{V3}/api"),
            ("POST", f"{V3}/api"),
            ("GET", f"{V3}/secret/api"),
        ):
            response = await http.request(method, url, json=1, headers=bearer(token))
            assert response.status_code == 403, (names, method, url, response.text)
            assert "SECRET" not in response.text and "secret" not in response.text
    # what a limited token may use, it may describe this way too
    token = await limited_to(http, admin_token, "temperature")
    described = await http.get(f"{V3}/temperature/api", headers=bearer(token))
    if dev1 == "legacy":
        assert described.status_code == 200 and described.json() == {"out": 21}
    else:  # a call of a resource the device does not have
        assert described.status_code == 404


async def test_streams_keep_the_limit(
    server: Roost, http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    """The WebSocket routes check each subscription and write by the same rule."""
    token = await limited_to(http, admin_token, "temperature")
    url = f"ws://127.0.0.1:{server.http_port}/v2/users/{ADMIN}/devices/dev1?authorization={token}"
    async with connect(url) as ws:
        for message in (
            {"resource": "api", "interval": 1},
            {"resource": "api/keys", "interval": 1},
            {"resource": "secret", "interval": 1},
            {"resource": "secret/api", "interval": 1},
            {"resource": "api", "in": 1},
        ):
            await ws.send(json.dumps(message))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert set(reply) == {"resource", "error"}, (message, reply)
            assert reply["resource"] == message["resource"]
        await ws.send(json.dumps({"resource": "temperature", "interval": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"resource": "temperature", "out": 21}


async def test_a_stream_of_a_nested_resource_is_checked_by_its_whole_path(
    server: Roost, http: httpx.AsyncClient, admin_token: str, dev1: str
) -> None:
    """A token limited to ``api/keys`` watches ``api/keys``, not ``api`` (its first name)."""
    token = await limited_to(http, admin_token, "api/keys")
    url = f"ws://127.0.0.1:{server.http_port}/v2/users/{ADMIN}/devices/dev1?authorization={token}"
    async with connect(url) as ws:
        await ws.send(json.dumps({"resource": "api", "interval": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert set(reply) == {"resource", "error"}, reply
        await ws.send(json.dumps({"resource": "api/keys", "interval": 1}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert reply == {"resource": "api/keys", "out": VALUES["api/keys"]}
