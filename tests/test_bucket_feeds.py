"""Device-source buckets (thinger-api.md 2.10): the server fills them with what the device's
resource streams, at an interval or on its events, with the SDK device over both protocols; the
feed pauses while the device is away and resumes when it comes back, follows the bucket's
changes through the API, and survives a restart of the server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.device.client import ProtocolName

from conftest import (
    ADMIN,
    DeviceFactory,
    bearer,
    bus_of,
    create_device,
    login,
    sdk_device,
    wait_for,
)

BUCKETS = f"/v1/users/{ADMIN}/buckets"
PROTOCOLS: list[ProtocolName] = ["legacy", "iotmp"]


class Sensor:
    """A device's resources: ``temperature`` counts its reads, ``climate`` is an object."""

    def __init__(self) -> None:
        self.reads = 0
        self.level = 0

    def attach(self, device: Device) -> Device:
        device.output("temperature", self._read)
        device.output("climate", lambda: {"t": 21.5, "h": 40})
        device.output("level", lambda: self.level)
        return device

    def _read(self) -> int:
        self.reads += 1
        return self.reads


def feed_config(resource: str, update: str = "interval", **more: Any) -> dict[str, Any]:
    return {"source": "device", "device": "dev1", "resource": resource, "update": update, **more}


async def create_bucket(
    http: httpx.AsyncClient, token: str, bucket: str, config: dict[str, Any]
) -> None:
    body = {"bucket": bucket, "name": bucket, "enabled": True, "config": config}
    response = await http.post(BUCKETS, json=body, headers=bearer(token))
    assert response.status_code == 200, response.text


async def points(
    http: httpx.AsyncClient, token: str, bucket: str, version: str = "v1"
) -> list[dict[str, Any]]:
    path = f"/{version}/users/{ADMIN}/buckets/{bucket}/data"
    response = await http.get(path, params={"sort": "asc"}, headers=bearer(token))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


async def wait_points(
    http: httpx.AsyncClient, token: str, bucket: str, count: int, version: str = "v1"
) -> list[dict[str, Any]]:
    """The bucket's points once it holds at least ``count`` (bounded by wait_for's timeout)."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = await points(http, token, bucket, version)
        return len(found) >= count

    await wait_for(enough)
    return found


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_interval_bucket_stores_the_resource_samples(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    sensor = Sensor()
    await connect_device(sensor.attach(sdk_device(server, protocol=protocol)))
    # created while the device is online: fed at once
    await create_bucket(http, admin_token, "temps", feed_config("temperature", interval=1))
    await create_bucket(http, admin_token, "climate", feed_config("climate", interval=1))
    temps = await wait_points(http, admin_token, "temps", 3)
    values = [point["val"] for point in temps]
    assert all(isinstance(v, int) for v in values) and values == sorted(set(values))
    assert values[-1] <= sensor.reads  # what the device's resource answered
    assert [p["ts"] for p in temps] == sorted({p["ts"] for p in temps})
    # an object is stored as it is: /v1 wraps it in val, /v2 spreads its fields
    (first, *_) = await wait_points(http, admin_token, "climate", 1)
    assert first["val"] == {"t": 21.5, "h": 40}
    (first_v2, *_) = await wait_points(http, admin_token, "climate", 1, "v2")
    assert first_v2 == {"ts": first["ts"], "t": 21.5, "h": 40}
    # the API still refuses writes into a bucket the device fills
    response = await http.post(f"{BUCKETS}/temps/data", json={"v": 1}, headers=bearer(admin_token))
    assert response.status_code == 400
    assert "filled from a device" in response.json()["error"]["message"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_events_bucket_stores_each_value_the_device_pushes(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    sensor = Sensor()
    device = await connect_device(sensor.attach(sdk_device(server, protocol=protocol)))
    await create_bucket(http, admin_token, "levels", feed_config("level", "events"))

    async def stream_open() -> bool:
        return await device.stream("level")  # False until the server opened the stream

    await wait_for(stream_open)  # what it pushed meanwhile is stored at level 0
    for level in (10, 11, 12):
        sensor.level = level
        assert await device.stream("level")

    async def pushed() -> bool:
        found = [p["val"] for p in await points(http, admin_token, "levels")]
        return [v for v in found if v != 0] == [10, 11, 12]  # each once, in order

    await wait_for(pushed)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_feed_pauses_while_the_device_is_away_and_resumes(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    # created before the device ever connects: fed once it does
    await create_bucket(http, admin_token, "temps", feed_config("temperature", interval=1))
    first = await connect_device(Sensor().attach(sdk_device(server, protocol=protocol)))
    await wait_points(http, admin_token, "temps", 2)
    await first.stop()

    async def offline() -> bool:
        stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(admin_token))
        return stats.json()["connected"] is False

    await wait_for(offline)
    assert server.services is not None
    left = server.services.now_ms()
    await asyncio.sleep(1.5)  # the device stays away for more than one interval
    away = await points(http, admin_token, "temps")
    assert all(p["ts"] <= left for p in away)  # nothing sampled meanwhile
    # the same device back (a new connection, its counter from 1 again): resumed, no restart
    await connect_device(Sensor().attach(sdk_device(server, protocol=protocol)))
    found = await wait_points(http, admin_token, "temps", len(away) + 2)
    assert [p["val"] for p in found if p["ts"] > left][:2] == [1, 2]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_disabling_or_deleting_the_bucket_stops_the_feed(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await create_device(http, admin_token)
    sensor = Sensor()
    device = await connect_device(sensor.attach(sdk_device(server, protocol=protocol)))
    await create_bucket(http, admin_token, "temps", feed_config("temperature", interval=1))
    await wait_points(http, admin_token, "temps", 1)
    temperature = device.resource("temperature")

    async def device_streams(count: int) -> None:
        async def there() -> bool:
            return len(temperature.streams) == count

        await wait_for(there)

    await device_streams(1)
    url, auth = f"{BUCKETS}/temps", bearer(admin_token)
    response = await http.put(url, json={"enabled": False}, headers=auth)
    assert response.status_code == 200, response.text
    await device_streams(0)  # nobody else watches: the device stream is closed
    held = await points(http, admin_token, "temps")
    response = await http.put(url, json={"enabled": True}, headers=auth)
    assert response.status_code == 200, response.text
    await device_streams(1)
    await wait_points(http, admin_token, "temps", len(held) + 1)
    # a new config retunes the feed: events only, from the interval
    response = await http.put(
        url, json={"config": feed_config("temperature", "events")}, headers=auth
    )
    assert response.status_code == 200, response.text

    async def on_events() -> bool:
        return [s.interval_ms for s in temperature.streams.values()] == [0]

    await wait_for(on_events)
    assert (await http.delete(url, headers=auth)).status_code == 200
    await device_streams(0)
    assert server.services is not None and server.services.feeds.fed() == []


async def test_a_missing_resource_is_logged_and_tried_again_when_the_device_reconnects(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "roost.buckets.feeds")
    await create_device(http, admin_token)
    await create_bucket(http, admin_token, "hum", feed_config("humidity", interval=1))
    bare = await connect_device(Sensor().attach(sdk_device(server)))  # has no humidity

    async def refused() -> bool:
        return any("did not stream 'humidity'" in r.getMessage() for r in caplog.records)

    await wait_for(refused)
    await bare.stop()
    assert bare.start_stream_count == 1  # asked once, not again and again
    assert await points(http, admin_token, "hum") == []
    # the device comes back with the resource: the feed starts
    device = sdk_device(server)
    device.output("humidity", lambda: 55)
    await connect_device(device)
    found = await wait_points(http, admin_token, "hum", 1)
    assert found[0]["val"] == 55


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[list[Roost]]:
    """Servers a test starts on one data dir, each stopped at its end."""
    started: list[Roost] = []
    yield started
    for roost in started:
        await roost.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_restarted_server_feeds_the_bucket_again(
    settings: Settings,
    running: list[Roost],
    protocol: ProtocolName,
    request: pytest.FixtureRequest,
) -> None:
    first = Roost(settings, bus=bus_of(request.config))
    running.append(first)
    await first.start()
    base = f"http://127.0.0.1:{first.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        token = await login(http)
        await create_device(http, token)
        await create_bucket(http, token, "temps", feed_config("temperature", interval=1))
        device = Sensor().attach(sdk_device(first, protocol=protocol))
        await device.start()
        await device.wait_connected(5)
        try:
            await wait_points(http, token, "temps", 1)
        finally:
            await device.stop()
    running.remove(first)
    await first.stop()
    second = Roost(settings, bus=bus_of(request.config))
    running.append(second)
    await second.start()
    base = f"http://127.0.0.1:{second.http_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        token = await login(http)
        before = await points(http, token, "temps")  # every sample of the first run, stored
        assert before
        device = Sensor().attach(sdk_device(second, protocol=protocol))
        await device.start()
        await device.wait_connected(5)
        try:
            found = await wait_points(http, token, "temps", len(before) + 2)
        finally:
            await device.stop()
    assert found[: len(before)] == before  # kept across the restart
    assert [p["val"] for p in found[len(before) :]][:2] == [1, 2]  # the new connection's samples


async def test_a_failed_write_is_logged_and_the_feed_goes_on(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert server.services is not None
    store = server.services.store
    write_points = store.write_points
    failures = 0

    async def failing_once(*args: Any, **kwargs: Any) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("disk full")
        await write_points(*args, **kwargs)

    monkeypatch.setattr(store, "write_points", failing_once)
    await create_device(http, admin_token)
    await connect_device(Sensor().attach(sdk_device(server)))
    await create_bucket(http, admin_token, "temps", feed_config("temperature", interval=1))
    found = await wait_points(http, admin_token, "temps", 1)
    assert failures == 1 and found[0]["val"] >= 2  # the first sample was lost, not the feed
    assert any("samples not stored" in r.getMessage() for r in caplog.records)


async def test_a_bucket_deleted_behind_the_feeds_back_stops_being_fed(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    """Deleted without the API telling the feeds (with its user, or by another node): the next
    write finds it gone and the feed stops; the other feeds go on."""
    await create_device(http, admin_token)
    device = await connect_device(Sensor().attach(sdk_device(server)))
    await create_bucket(http, admin_token, "temps", feed_config("temperature", interval=1))
    await create_bucket(http, admin_token, "climate", feed_config("climate", interval=1))
    await wait_points(http, admin_token, "temps", 1)
    assert server.services is not None
    assert await server.services.store.delete_bucket(ADMIN, "temps")

    async def stopped() -> bool:
        return not device.resource("temperature").streams

    await wait_for(stopped)
    assert server.services.feeds.fed() == [(ADMIN, "climate")]
    held = len(await points(http, admin_token, "climate"))
    await wait_points(http, admin_token, "climate", held + 1)


async def test_a_bucket_with_update_none_is_not_fed(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token)
    device = await connect_device(Sensor().attach(sdk_device(server)))
    await create_bucket(http, admin_token, "quiet", feed_config("temperature", "none"))
    await create_bucket(http, admin_token, "climate", feed_config("climate", interval=1))
    await wait_points(http, admin_token, "climate", 1)  # the one created after it is fed
    assert not device.resource("temperature").streams
    assert await points(http, admin_token, "quiet") == []
