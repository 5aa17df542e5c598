"""The device registry over real HTTP: create (both body shapes), list, read, update, delete."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from roost.app import Roost

from conftest import ADMIN, DeviceFactory, bearer, create_device, wait_offline

DEVICES = f"/v1/users/{ADMIN}/devices"


async def test_create_with_current_body_and_list(http: httpx.AsyncClient, admin_token: str) -> None:
    created = await http.post(
        DEVICES,
        json={
            "device": "sensor-1",
            "credentials": "secret1",
            "name": "Sensor",
            "description": "kitchen",
            "type": "Generic",
        },
        headers=bearer(admin_token),
    )
    assert created.status_code == 200
    listed = (await http.get(DEVICES, headers=bearer(admin_token))).json()
    assert len(listed) == 1
    item = listed[0]
    assert item["device"] == "sensor-1"
    assert item["name"] == "Sensor"
    assert item["description"] == "kitchen"
    assert item["type"] == "Generic"
    assert item["connection"] == {"active": False, "ts": None}
    assert "credentials" not in item and "credentials_hash" not in item


async def test_create_with_seed_body(http: httpx.AsyncClient, admin_token: str) -> None:
    response = await http.post(
        DEVICES,
        json={
            "device_id": "dev_2",
            "device_description": "from the 2017 API",
            "device_credentials": "secret22",
        },
        headers=bearer(admin_token),
    )
    assert response.status_code == 200
    device = (await http.get(f"{DEVICES}/dev_2", headers=bearer(admin_token))).json()
    assert device["description"] == "from the 2017 API"
    assert device["type"] == "Generic"


async def test_list_filter_by_id(http: httpx.AsyncClient, admin_token: str) -> None:
    for name in ("a1", "b2", "c3"):
        await create_device(http, admin_token, name)
    all_ids = [d["device"] for d in (await http.get(DEVICES, headers=bearer(admin_token))).json()]
    assert all_ids == ["a1", "b2", "c3"]
    only = (await http.get(DEVICES, params={"id": "b2"}, headers=bearer(admin_token))).json()
    assert [d["device"] for d in only] == ["b2"]


@pytest.mark.parametrize(
    "body",
    [
        {"device": "bad id", "credentials": "secret1"},
        {"device": "x" * 33, "credentials": "secret1"},
        {"device": "../etc", "credentials": "secret1"},
        {"device": "", "credentials": "secret1"},
        {"device": 12, "credentials": "secret1"},
        {"credentials": "secret1"},
        {"device": "ok"},
        {"device": "ok", "credentials": "short"},
        {"device": "ok", "credentials": 123456},
        {"device": "ok", "credentials": "secret1", "type": "Toaster"},
        {"device": "ok", "credentials": "secret1", "enabled": "yes"},
        {"device": "ok", "credentials": "secret1", "name": ["x"]},
    ],
)
async def test_bad_create_bodies_are_400(
    http: httpx.AsyncClient, admin_token: str, body: object
) -> None:
    response = await http.post(DEVICES, json=body, headers=bearer(admin_token))
    assert response.status_code == 400
    assert isinstance(response.json()["error"]["message"], str)
    assert (await http.get(DEVICES, headers=bearer(admin_token))).json() == []


async def test_malformed_json_is_400(http: httpx.AsyncClient, admin_token: str) -> None:
    for content in (b"{", b"", b"[1,2]", b'"text"', b"\xff"):
        response = await http.post(
            DEVICES,
            content=content,
            headers={**bearer(admin_token), "Content-Type": "application/json"},
        )
        assert response.status_code == 400, content


async def test_duplicate_device_is_400(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token, "dup")
    response = await http.post(
        DEVICES, json={"device": "dup", "credentials": "secret1"}, headers=bearer(admin_token)
    )
    assert response.status_code == 400
    assert "exists" in response.json()["error"]["message"]


async def test_http_device_needs_no_credentials(http: httpx.AsyncClient, admin_token: str) -> None:
    response = await http.post(
        DEVICES, json={"device": "hook", "type": "HTTP"}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.json()["type"] == "HTTP"


async def test_read_update_delete(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token, "d1")
    url = f"{DEVICES}/d1"
    updated = await http.put(
        url, json={"name": "Renamed", "description": "new"}, headers=bearer(admin_token)
    )
    assert updated.status_code == 200
    device = (await http.get(url, headers=bearer(admin_token))).json()
    assert (device["name"], device["description"]) == ("Renamed", "new")
    assert device["modified"] >= device["created"]

    assert (await http.delete(url, headers=bearer(admin_token))).status_code == 200
    assert (await http.get(url, headers=bearer(admin_token))).status_code == 404
    missing = await http.delete(url, headers=bearer(admin_token))
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    put_missing = await http.put(url, json={"name": "x"}, headers=bearer(admin_token))
    assert put_missing.status_code == 404


async def test_credentials_rotation_takes_effect(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token, "rot", "old-secret")
    response = await http.put(
        f"{DEVICES}/rot", json={"credentials": "new-secret"}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    device = await connect_device(name="rot", credentials="new-secret")
    assert device.connected.is_set()


async def test_delete_while_connected_is_400(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token)
    device = await connect_device()
    response = await http.delete(f"{DEVICES}/dev1", headers=bearer(admin_token))
    assert response.status_code == 400
    assert "connected" in response.json()["error"]["message"]
    listed = (await http.get(DEVICES, headers=bearer(admin_token))).json()
    assert listed[0]["connection"]["active"] is True
    assert isinstance(listed[0]["connection"]["ts"], int)
    await device.stop()
    await wait_offline(http, admin_token, "dev1")
    assert (await http.delete(f"{DEVICES}/dev1", headers=bearer(admin_token))).status_code == 200


async def test_connected_device_lists_its_connect_time_before_the_store_has_it(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store learns of a connection in the background; the listing of a connected device
    shows the session's start meanwhile, not null."""
    assert server.services is not None
    landing = asyncio.Event()  # held until the listing is read

    async def held_back(owner: str, device: str, ts: int) -> None:
        await landing.wait()

    monkeypatch.setattr(server.services.store, "set_last_connection", held_back)
    await create_device(http, admin_token)
    device = await connect_device()
    try:
        listed = (await http.get(DEVICES, headers=bearer(admin_token))).json()
        stats = (await http.get(f"{DEVICES}/dev1/stats", headers=bearer(admin_token))).json()
        assert listed[0]["connection"]["active"] is True
        assert listed[0]["connection"]["ts"] == stats["connected_ts"]
        assert isinstance(stats["connected_ts"], int)
    finally:
        landing.set()
        await device.stop()


async def test_disabling_a_device_disconnects_and_locks_it_out(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token)
    device = await connect_device()
    response = await http.put(
        f"{DEVICES}/dev1", json={"enabled": False}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert response.json()["connection"]["active"] is False
    await wait_offline(http, admin_token, "dev1")
    # the SDK keeps retrying; a disabled device is refused every time
    await asyncio.sleep(0.5)
    stats = (await http.get(f"{DEVICES}/dev1/stats", headers=bearer(admin_token))).json()
    assert stats["connected"] is False
    assert not device.connected.is_set()
