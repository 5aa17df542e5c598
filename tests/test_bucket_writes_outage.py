"""No acknowledged bucket write is lost while PostgreSQL is briefly unavailable (issue 13).

Devices (the SDK, both protocols, several writes under way each) and an HTTP client keep
writing points while the database goes away behind a TCP proxy (tests/pg_proxy.py): once with
its connections cut and new ones refused, once with new ones accepted and never answered. A
write may fail meanwhile (it was not acknowledged), but it must be answered: a device hears a
refusal, the HTTP client a status. Once PostgreSQL is back and the writers have gone on, every
point acknowledged (a device's confirmation, an HTTP 2xx) is read back through the REST API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from roost.app import Roost
from roost.device.client import Device, ProtocolName

from acked_writes import (
    ANSWER_S,
    Tally,
    acked_by_all,
    failed_for_all,
    stop_writing,
    stored_values,
    write_until,
)
from conftest import ADMIN, bearer, create_device, login, make_settings, sdk_device, wait_for
from pg_proxy import Proxy, proxy  # noqa: F401

BUCKETS = f"/v1/users/{ADMIN}/buckets"
DEVICES: list[tuple[str, ProtocolName]] = [
    ("legacy1", "legacy"),
    ("legacy2", "legacy"),
    ("iotmp1", "iotmp"),
    ("iotmp2", "iotmp"),
]
IN_FLIGHT = 4  # writes each device keeps under way


async def _bucket(http: httpx.AsyncClient, token: str, bucket: str) -> None:
    body = {"bucket": bucket, "name": bucket, "enabled": True, "config": {"source": "write"}}
    response = await http.post(BUCKETS, json=body, headers=bearer(token))
    assert response.status_code == 200, response.text


async def test_no_acknowledged_bucket_write_is_lost_while_postgresql_goes_away(
    tmp_path: Path,
    proxy: tuple[Proxy, str],  # noqa: F811
) -> None:
    gate, url = proxy
    roost = Roost(make_settings(tmp_path / "data", database_url=url))
    await roost.start()
    devices: list[Device] = []
    tally = Tally()
    stop = asyncio.Event()
    writers: list[asyncio.Task[None]] = []
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{roost.http_port}", timeout=ANSWER_S
        ) as http:
            token = await login(http)
            for bucket in ("device_log", "http_log"):
                await _bucket(http, token, bucket)
            for name, protocol in DEVICES:
                await create_device(http, token, name, credentials=f"secret-{name}")
                device = sdk_device(roost, name, protocol, credentials=f"secret-{name}")
                devices.append(device)
                await device.start()
                await device.wait_connected(5)

            async def post(value: str) -> bool:
                response = await http.post(
                    f"{BUCKETS}/http_log/data", json={"v": value}, headers=bearer(token)
                )
                assert response.status_code in (200, 503), response.text
                return response.status_code == 200

            for device in devices:

                async def confirmed(value: str, device: Device = device) -> bool:
                    return await device.write_bucket("device_log", value, confirm=True)

                for lane in range(IN_FLIGHT):
                    name = f"{device.device}.{lane}"
                    writers.append(asyncio.create_task(write_until(stop, tally, name, confirmed)))
            writers.append(asyncio.create_task(write_until(stop, tally, "http", post)))

            every = len(writers)
            await wait_for(acked_by_all(tally, every), 10)
            for black_hole in (False, True):
                await gate.stop()  # connections cut; new ones refused
                refused = failed_for_all(tally, every)
                await wait_for(refused, 15)  # the writes meanwhile fail: answered, not lost
                if black_hole:  # then new ones accepted and never answered
                    gate.black_hole = True
                    swallowed = failed_for_all(tally, every)
                    await gate.start()
                    # each writer's next write waits for the store's timeout (5 s), then fails
                    await wait_for(swallowed, 20)
                    await gate.stop()
                    gate.black_hole = False
                await gate.start()  # back: the pool reconnects by itself
                await wait_for(acked_by_all(tally, every), 20)
            stop.set()
            await asyncio.gather(*writers)
            assert tally.hung == []

            stored = set(await stored_values(http, token, f"{BUCKETS}/device_log"))
            stored |= {v["v"] for v in await stored_values(http, token, f"{BUCKETS}/http_log")}
            assert tally.acked - stored == set()
            assert len(tally.acked) > every * 3  # before, between and after the outages
    finally:
        await stop_writing(stop, writers, devices)
        await roost.stop()
