"""The bus contract (bus_contract.py) against a second bus: tests/wire_bus.py, which carries
every message to the node's local bus as bytes, as a NATS bus will."""

from __future__ import annotations

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.wiring import BusFactory

from bus_contract import *  # noqa: F403
from conftest import ADMIN, bearer, create_device, login, sdk_device
from wire_bus import WireBus


@pytest.fixture
def bus_factory() -> BusFactory:
    return WireBus


async def test_a_roost_built_with_another_bus_answers_over_it(settings: Settings) -> None:
    """What ``pytest --bus=wire`` runs the API tests on: Roost takes the bus it is given, and
    resource calls, stats and device listings go over it."""
    roost = Roost(settings, bus=WireBus)
    await roost.start()
    device = sdk_device(roost)
    device.output("temperature", lambda: 21.5)
    try:
        assert roost.services is not None and isinstance(roost.services.bus, WireBus)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            token = await login(http)
            await create_device(http, token)
            await device.start()
            await device.wait_connected(5)
            before = roost.services.bus.messages
            url = f"/v2/users/{ADMIN}/devices/dev1/temperature"
            response = await http.get(url, headers=bearer(token))
            assert response.status_code == 200 and response.json() == {"out": 21.5}
            assert roost.services.bus.messages == before + 2  # the request and its answer
            response = await http.get(f"/v1/users/{ADMIN}/devices", headers=bearer(token))
            assert response.json()[0]["connection"]["active"] is True
            assert roost.services.bus.messages == before + 4  # and the stats of the listing
    finally:
        await device.stop()
        await roost.stop()
