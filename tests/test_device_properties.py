"""Device properties (issue 11 item 2): the v3 REST routes over real HTTP with each kind of
token, and the SDK device reading and writing them over both protocols."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.device.client import ProtocolName
from roost.errors import NotFound
from roost.wire import iotmp, legacy
from roost.wire.iotmp import MessageType as T
from roost.wire.iotmp import Service
from roost.wire.legacy import Message, Signal

from conftest import ADMIN, DeviceFactory, bearer, create_device, make_settings, sdk_device

PROPERTIES = f"/v3/users/{ADMIN}/devices/dev1/properties"
PROTOCOLS: list[ProtocolName] = ["legacy", "iotmp"]
LIMIT = 3  # max_device_properties here: every test but the one on the limit stays within it


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_device_properties=LIMIT)


async def _access_token(http: httpx.AsyncClient, admin: str, allow: object) -> str:
    created = await http.post(
        f"/v1/users/{ADMIN}/tokens", json={"token": "props", "allow": allow}, headers=bearer(admin)
    )
    assert created.status_code == 200, created.text
    token: str = created.json()["access_token"]
    return token


async def test_rest_crud(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    await create_device(http, admin_token)
    assert (await http.get(PROPERTIES, headers=auth)).json() == []
    created = await http.post(
        PROPERTIES,
        json={"property": "config", "value": {"rate": 5}, "name": "Config", "perm": {}},
        headers=auth,
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["property"], body["value"], body["name"], body["type"]) == (
        "config",
        {"rate": 5},
        "Config",
        "",
    )
    many = [{"property": "a", "value": 1}, {"property": "b", "value": [1, "x"]}]
    listed = await http.post(PROPERTIES, json=many, headers=auth)
    assert [p["property"] for p in listed.json()] == ["a", "b"]
    again = await http.post(PROPERTIES, json={"property": "a", "value": 2}, headers=auth)
    assert again.status_code == 400 and "exists" in again.json()["error"]["message"]
    everything = (await http.get(PROPERTIES, headers=auth)).json()
    assert [p["property"] for p in everything] == ["a", "b", "config"]

    put = await http.put(f"{PROPERTIES}/config", json={"value": {"rate": 9}}, headers=auth)
    assert put.status_code == 200 and put.json()["value"] == {"rate": 9}
    assert put.json()["name"] == "Config"  # PUT changes what it carries
    patch = await http.patch(
        f"{PROPERTIES}/config", json={"description": "d", "type": "configuration"}, headers=auth
    )
    assert patch.status_code == 200
    read = (await http.get(f"{PROPERTIES}/config", headers=auth)).json()
    assert (read["value"], read["description"], read["type"]) == ({"rate": 9}, "d", "configuration")

    assert (
        await http.put(f"{PROPERTIES}/config", json={"name": "n"}, headers=auth)
    ).status_code == 400
    assert (
        await http.put(f"{PROPERTIES}/nope", json={"value": 1}, headers=auth)
    ).status_code == 404
    assert (
        await http.patch(f"{PROPERTIES}/nope", json={"value": 1}, headers=auth)
    ).status_code == 404
    assert (await http.delete(f"{PROPERTIES}/config", headers=auth)).status_code == 200
    assert (await http.get(f"{PROPERTIES}/config", headers=auth)).status_code == 404
    assert (await http.delete(f"{PROPERTIES}/config", headers=auth)).status_code == 404


async def test_rest_refuses_bad_input(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await create_device(http, admin_token)
    for body in (
        {"property": "a.b", "value": 1},
        {"property": "a" * 33, "value": 1},
        {"property": "ok"},  # no value
        {"property": "ok", "value": 1, "type": "other"},
        {"property": "ok", "value": 2**64},  # no device could be sent it
        [],
        [{"property": "x", "value": 1}, {"property": "x", "value": 2}],
        "text",
    ):
        answer = await http.post(PROPERTIES, json=body, headers=auth)
        assert answer.status_code == 400, body
        assert set(answer.json()) == {"error"}
    assert (await http.get(PROPERTIES, headers=auth)).json() == []  # nothing half-created
    big = "x" * server.settings.max_frame_bytes
    too_big = await http.post(PROPERTIES, json={"property": "big", "value": big}, headers=auth)
    assert too_big.status_code == 413
    assert (await http.get(f"{PROPERTIES}/a.b", headers=auth)).status_code == 400
    missing = f"/v3/users/{ADMIN}/devices/ghost/properties"
    assert (await http.get(missing, headers=auth)).status_code == 404
    assert (
        await http.post(missing, json={"property": "a", "value": 1}, headers=auth)
    ).status_code == 404


async def test_tokens(http: httpx.AsyncClient, admin_token: str) -> None:
    admin = bearer(admin_token)
    await create_device(http, admin_token)
    await create_device(http, admin_token, "dev2")
    await http.post(PROPERTIES, json={"property": "p", "value": 1}, headers=admin)
    allow = {"Device": {"dev1": ["ReadDeviceProperty", "ListDeviceProperties"]}}
    scoped = bearer(await _access_token(http, admin_token, allow))
    assert (await http.get(f"{PROPERTIES}/p", headers=scoped)).json()["value"] == 1
    assert (await http.get(PROPERTIES, headers=scoped)).status_code == 200
    other = f"/v3/users/{ADMIN}/devices/dev2/properties"
    assert (await http.get(other, headers=scoped)).status_code == 403
    for refused in (
        http.put(f"{PROPERTIES}/p", json={"value": 2}, headers=scoped),
        http.post(PROPERTIES, json={"property": "q", "value": 2}, headers=scoped),
        http.delete(f"{PROPERTIES}/p", headers=scoped),
    ):
        assert (await refused).status_code == 403
    made = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens", json={"token_name": "t"}, headers=admin
    )
    device_token = bearer(made.json()["token"])
    assert (await http.get(f"{PROPERTIES}/p", headers=device_token)).status_code == 403
    assert (await http.get(PROPERTIES, headers=device_token)).status_code == 403
    assert (await http.get(PROPERTIES)).status_code == 401


async def test_deleting_the_device_deletes_its_properties(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    await create_device(http, admin_token)
    await http.post(PROPERTIES, json={"property": "p", "value": 1}, headers=auth)
    assert (await http.delete(f"/v1/users/{ADMIN}/devices/dev1", headers=auth)).status_code == 200
    await create_device(http, admin_token)
    assert (await http.get(PROPERTIES, headers=auth)).json() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_sets_then_rest_reads(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    device = await connect_device(sdk_device(server, protocol=protocol))
    assert await device.set_property("location", {"lat": 40.4, "lng": -3.7}, confirm=True)
    read = await http.get(f"{PROPERTIES}/location", headers=bearer(admin_token))
    assert read.status_code == 200 and read.json()["value"] == {"lat": 40.4, "lng": -3.7}
    assert await device.set_property("location", 7, confirm=True)  # a second set replaces it
    assert await device.get_property("location") == 7
    assert not await device.set_property("bad.id", 1, confirm=True)  # refused, not ignored
    assert await device.set_property("quiet", "x")  # unconfirmed: lands all the same
    assert await device.get_property("quiet") == "x"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_rest_writes_then_device_reads(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    auth = bearer(admin_token)
    await http.post(PROPERTIES, json={"property": "cfg", "value": {"on": True}}, headers=auth)
    device = await connect_device(sdk_device(server, protocol=protocol))
    assert await device.get_property("cfg") == {"on": True}
    await http.put(f"{PROPERTIES}/cfg", json={"value": [1, 2.5, None, "s"]}, headers=auth)
    assert await device.get_property("cfg") == [1, 2.5, None, "s"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_device_reading_a_missing_property_gets_an_error(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    # a generous request timeout: an error reply, not the timeout, must end the call
    device = await connect_device(sdk_device(server, protocol=protocol, request_timeout=30))
    for missing in ("absent", "not.an.id"):
        with pytest.raises(NotFound):
            await asyncio.wait_for(device.get_property(missing), 10)
    assert device.is_connected  # and the connection goes on
    assert await device.set_property("now_here", 1, confirm=True)
    assert await device.get_property("now_here") == 1


# -- on the wire, as the official clients send them ------------------------------------------


async def test_legacy_get_property_is_answered_without_a_stream_id(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """The official client sends GET_PROPERTY with stream id 0 and waits for flag 1 (the value)
    with no stream id; a missing property is flag 2, also without one: ``01 02 10 02``."""
    await create_device(http, admin_token)
    await http.post(PROPERTIES, json={"property": "p", "value": 23.5}, headers=bearer(admin_token))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.device_port)
    try:
        writer.write(
            legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "dev1", "secret1"]))
        )
        assert await reader.readexactly(4) == bytes.fromhex("01 02 10 01")
        writer.write(legacy.encode(Message(signal=Signal.GET_PROPERTY, identifier="missing")))
        assert await reader.readexactly(4) == bytes.fromhex("01 02 10 02")
        writer.write(legacy.encode(Message(signal=Signal.GET_PROPERTY, identifier="p")))
        expected = legacy.encode(Message(signal=Signal.REQUEST_OK, payload=23.5))
        assert await reader.readexactly(len(expected)) == expected
        # an unconfirmed SET (stream id 0) is not answered: the next answer is the keep-alive's
        writer.write(legacy.encode(Message(signal=Signal.SET_PROPERTY, identifier="p", payload=1)))
        writer.write(legacy.KEEP_ALIVE_BYTES)
        assert await reader.readexactly(2) == legacy.KEEP_ALIVE_BYTES
    finally:
        writer.close()
    read = await http.get(f"{PROPERTIES}/p", headers=bearer(admin_token))
    assert read.json()["value"] == 1


async def test_iotmp_embedded_layout(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """IOTMP-Embedded/Arduino put the service id in PARAMETERS and the property in RESOURCE."""
    await create_device(http, admin_token)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.iotmp_port)
    decoder = iotmp.Decoder()

    async def call(message: iotmp.Message) -> iotmp.Message:
        writer.write(iotmp.encode(message))
        while True:
            frames = decoder.feed(await reader.read(4096))
            if frames:
                [reply] = frames
                return reply

    try:
        connect = iotmp.Message(T.CONNECT, 9, payload=[ADMIN, "dev1", "secret1"])
        assert await call(connect) == iotmp.Message(T.OK, 9)
        set_ = iotmp.Message(T.RUN, 7, Service.SET_DEVICE_PROPERTY, {"a": [1]}, "cfg")
        assert await call(set_) == iotmp.Message(T.OK, 7)
        get = iotmp.Message(T.RUN, 8, Service.READ_DEVICE_PROPERTY, resource="cfg")
        assert await call(get) == iotmp.Message(T.OK, 8, payload={"a": [1]})
        missing = await call(iotmp.Message(T.RUN, 10, Service.READ_DEVICE_PROPERTY, resource="x"))
        assert (missing.type, missing.stream_id) == (T.ERROR, 10)
        assert isinstance(missing.payload, dict) and "error" in missing.payload
    finally:
        writer.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_device_holds_at_most_max_device_properties(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    auth = bearer(admin_token)
    await create_device(http, admin_token)
    full = [{"property": f"p{i}", "value": i} for i in range(LIMIT)]
    assert (await http.post(PROPERTIES, json=full, headers=auth)).status_code == 200
    one_more = await http.post(PROPERTIES, json={"property": "more", "value": 0}, headers=auth)
    assert one_more.status_code == 400
    device = await connect_device(sdk_device(server, protocol=protocol))
    assert not await device.set_property("more", 1, confirm=True)  # refused, not stored
    assert await device.set_property("p0", "new", confirm=True)  # an existing one still changes
    listed = (await http.get(PROPERTIES, headers=auth)).json()
    assert [(p["property"], p["value"]) for p in listed] == [("p0", "new"), ("p1", 1), ("p2", 2)]
