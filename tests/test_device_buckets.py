"""Devices' bucket writes (legacy flag 10, IOTMP service 5) with the SDK device over both
protocols: a confirmed write is stored before its confirmation; a refused one is answered."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from roost.app import Roost
from roost.device.client import ProtocolName

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device, wait_for

BUCKETS = f"/v1/users/{ADMIN}/buckets"
PROTOCOLS: list[ProtocolName] = ["legacy", "iotmp"]


async def _bucket(
    http: httpx.AsyncClient, token: str, bucket: str, source: str = "write", enabled: bool = True
) -> None:
    body = {"bucket": bucket, "name": bucket, "enabled": enabled, "config": {"source": source}}
    response = await http.post(BUCKETS, json=body, headers=bearer(token))
    assert response.status_code == 200, response.text


async def _points(http: httpx.AsyncClient, token: str, bucket: str) -> list[Any]:
    response = await http.get(
        f"{BUCKETS}/{bucket}/data", params={"sort": "asc"}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    return [point["val"] for point in response.json()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_confirmed_write_is_stored_before_its_confirmation(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    await _bucket(http, admin_token, "temperature_log")
    device = await connect_device(sdk_device(server, protocol=protocol))
    for n in range(3):
        assert await device.write_bucket("temperature_log", {"t": 20 + n, "n": n}, confirm=True)
        # confirmed: already readable, no waiting
        assert (await _points(http, admin_token, "temperature_log"))[-1] == {"t": 20 + n, "n": n}
    assert await device.write_bucket("temperature_log", 23.5, confirm=True)  # a bare value
    assert (await _points(http, admin_token, "temperature_log"))[-1] == 23.5
    # writes made faster than one per ms keep every point
    for n in range(20):
        await device.write_bucket("temperature_log", {"burst": n})
    assert await device.write_bucket("temperature_log", {"burst": 20}, confirm=True)
    points = await _points(http, admin_token, "temperature_log")
    burst = [p for p in points if isinstance(p, dict) and "burst" in p]
    assert burst == [{"burst": n} for n in range(21)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_unconfirmed_write_lands_too(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    await _bucket(http, admin_token, "log")
    device = await connect_device(sdk_device(server, protocol=protocol))
    await device.write_bucket("log", {"v": 1})

    async def landed() -> bool:
        return await _points(http, admin_token, "log") == [{"v": 1}]

    await wait_for(landed)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_writes_a_bucket_cannot_take_are_refused_not_left_waiting(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    await _bucket(http, admin_token, "off", enabled=False)
    await _bucket(http, admin_token, "api_only", source="api")
    device = await connect_device(sdk_device(server, protocol=protocol))
    for bucket in ("absent", "off", "api_only", "not a bucket id"):
        assert not await device.write_bucket(bucket, {"v": 1}, confirm=True), bucket
    assert await _points(http, admin_token, "off") == []
    assert await _points(http, admin_token, "api_only") == []
    # the session goes on: a good write after the refusals is stored
    await _bucket(http, admin_token, "good")
    assert await device.write_bucket("good", {"v": 2}, confirm=True)
    assert await _points(http, admin_token, "good") == [{"v": 2}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_writes_sent_together_are_answered_each_on_its_own(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    """A device's writes sent back to back (stored together): to two buckets, with refused ones
    among them (no such bucket, data JSON cannot hold), each confirmed or refused alone."""
    await create_device(http, admin_token)
    await _bucket(http, admin_token, "a")
    await _bucket(http, admin_token, "b")
    device = await connect_device(sdk_device(server, protocol=protocol))
    writes: list[tuple[str, Any]] = [("a", {"n": n}) for n in range(10)]
    writes[3] = ("absent", {"n": 3})
    writes[5] = ("a", b"\x00 bytes")  # PSON carries bytes, JSON does not
    writes[7] = ("b", {"n": 7})
    confirmed = await asyncio.gather(
        *(device.write_bucket(bucket, data, confirm=True) for bucket, data in writes)
    )
    assert confirmed == [n not in (3, 5) for n in range(10)]
    assert await _points(http, admin_token, "a") == [
        {"n": n} for n in range(10) if n not in (3, 5, 7)
    ]
    assert await _points(http, admin_token, "b") == [{"n": 7}]
