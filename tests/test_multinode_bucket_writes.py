"""No acknowledged bucket write is lost while NATS is briefly away (issue 13): two `roost serve`
nodes (tests/test_multinode.py's), devices of both protocols on node B writing confirmed points
into a bucket while the nats-server is stopped and started again; every point a device had
confirmed is read back through node A's API. (A write needs the database, not NATS: none should
fail; any that does must be answered, not left hanging.)"""

from __future__ import annotations

import asyncio
from typing import Literal

from roost.device import Device

from acked_writes import Tally, acked_by_all, stop_writing, stored_values, write_until
from conftest import ADMIN, bearer, create_device, login
from nats_server import NatsServer, nats_server  # noqa: F401
from test_multinode import DEVICE_URL, Node, database, nodes, sdk_device, until  # noqa: F401

BUCKET = f"/v1/users/{ADMIN}/buckets/device_log"
WRITERS: list[tuple[str, Literal["legacy", "iotmp"]]] = [("legacy1", "legacy"), ("iotmp1", "iotmp")]
IN_FLIGHT = 4  # writes each device keeps under way


async def test_no_acknowledged_bucket_write_is_lost_while_nats_goes_away(
    nodes: tuple[Node, Node],  # noqa: F811
    nats_server: NatsServer,  # noqa: F811
) -> None:
    a, b = nodes
    token = await login(a.http)
    body = {"bucket": "device_log", "name": "log", "enabled": True, "config": {"source": "write"}}
    response = await a.http.post(f"/v1/users/{ADMIN}/buckets", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    await create_device(a.http, token)  # dev1 on A: how the test sees that B has lost NATS
    held = sdk_device(a)
    devices: list[Device] = [held]
    tally = Tally()
    stop = asyncio.Event()
    writers: list[asyncio.Task[None]] = []
    try:
        await held.start()
        for name, protocol in WRITERS:
            await create_device(a.http, token, name, credentials=f"secret-{name}")
            port = b.ports["device" if protocol == "legacy" else "iotmp"]
            device = Device(ADMIN, name, f"secret-{name}", port=port, protocol=protocol)
            devices.append(device)
            await device.start()
        for device in devices:
            await device.wait_connected(10)
        for device in devices[1:]:

            async def confirmed(value: str, device: Device = device) -> bool:
                return await device.write_bucket("device_log", value, confirm=True)

            for lane in range(IN_FLIGHT):
                name = f"{device.device}.{lane}"
                writers.append(asyncio.create_task(write_until(stop, tally, name, confirmed)))
        every = len(writers)
        await until(acked_by_all(tally, every))

        nats_server.stop()

        async def nats_gone_for_b() -> bool:
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            return response.status_code == 503

        await until(nats_gone_for_b)
        await until(acked_by_all(tally, every))  # B's devices write on meanwhile
        nats_server.start()

        async def nats_back_for_b() -> bool:
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            return response.status_code == 200

        await until(nats_back_for_b)
        await until(acked_by_all(tally, every))
        stop.set()
        await asyncio.gather(*writers)
        assert tally.hung == []

        stored = set(await stored_values(a.http, token, BUCKET))
        assert tally.acked - stored == set()
        assert len(tally.acked) > every * 3  # before, during and after the outage
    finally:
        await stop_writing(stop, writers, devices)
