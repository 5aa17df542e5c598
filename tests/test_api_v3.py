"""The v3 resource API (raw JSON, octet-stream bodies, flat listing) and the v1 form."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from roost.app import Roost
from roost.device import Device

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device

V3 = f"/v3/users/{ADMIN}/devices/dev1/resources"


class Firmware:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def attach(self, device: Device) -> Device:
        device.output("temperature", lambda: 23.5)
        device.input_output("echo", lambda value: value, sample=None)
        device.input_output("$ota/write", self._write, sample=b"")
        device.output("$ota/options", lambda: {"enabled": True, "block_size": 4096})
        device.run("reset", lambda: None)
        device.input("relay", lambda value: None, getter=lambda: False)
        return device

    def _write(self, chunk: Any) -> dict[str, Any]:
        assert isinstance(chunk, bytes)
        self.chunks.append(chunk)
        return {"success": True}


@pytest.fixture(params=["legacy", "iotmp"])
async def firmware(
    request: pytest.FixtureRequest,
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> Firmware:
    await create_device(http, admin_token)
    firmware = Firmware()
    await connect_device(firmware.attach(sdk_device(server, protocol=request.param)))
    return firmware


async def test_raw_json_in_and_out(
    http: httpx.AsyncClient, admin_token: str, firmware: Firmware
) -> None:
    response = await http.get(f"{V3}/temperature", headers=bearer(admin_token))
    assert response.content == b"23.5"
    options = await http.get(f"{V3}/$ota/options", headers=bearer(admin_token))
    assert options.json() == {"enabled": True, "block_size": 4096}
    echoed = await http.post(f"{V3}/echo", json={"a": [1, 2.5, "x"]}, headers=bearer(admin_token))
    assert echoed.content == b'{"a":[1,2.5,"x"]}'
    number = await http.post(f"{V3}/echo", json=7, headers=bearer(admin_token))
    assert number.content == b"7"
    run = await http.post(f"{V3}/reset", headers=bearer(admin_token))
    assert (run.status_code, run.content) == (200, b"")


async def test_octet_stream_reaches_the_device_as_bytes(
    http: httpx.AsyncClient, admin_token: str, firmware: Firmware
) -> None:
    chunk = bytes(range(256)) * 16
    response = await http.post(
        f"{V3}/$ota/write",
        content=chunk,
        headers={**bearer(admin_token), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert firmware.chunks == [chunk]


async def test_flat_listing(http: httpx.AsyncClient, admin_token: str, firmware: Firmware) -> None:
    listing = (await http.get(V3, headers=bearer(admin_token))).json()
    assert listing["temperature"] == {"fn": 3, "type": "output"}
    assert listing["relay"] == {"fn": 2, "type": "input"}
    assert listing["echo"] == {"fn": 4, "type": "input_output"}
    assert listing["reset"] == {"fn": 1, "type": "run"}
    assert listing["$ota/write"]["type"] == "input_output"
    legacy_form = (
        await http.get(f"/v2/users/{ADMIN}/devices/dev1/api", headers=bearer(admin_token))
    ).json()
    assert legacy_form["$ota"]["/"]["write"] == {"al": 0, "fn": 4}


async def test_v1_form_calls_resources(
    http: httpx.AsyncClient, admin_token: str, firmware: Firmware
) -> None:
    base = f"/v1/users/{ADMIN}/devices/dev1"
    assert (await http.get(f"{base}/temperature", headers=bearer(admin_token))).json() == {
        "out": 23.5
    }
    assert (await http.get(f"{base}/reset", headers=bearer(admin_token))).status_code == 200
    # the registry routes under the same prefix still win
    stats = await http.get(f"{base}/stats", headers=bearer(admin_token))
    assert stats.json()["connected"] is True


async def test_v3_errors(http: httpx.AsyncClient, admin_token: str, firmware: Firmware) -> None:
    assert (await http.get(f"{V3}/nope", headers=bearer(admin_token))).status_code == 404
    bad = await http.post(
        f"{V3}/echo",
        content=b"{nope",
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    ghost = await http.get(
        f"/v3/users/{ADMIN}/devices/ghost/resources", headers=bearer(admin_token)
    )
    assert ghost.status_code == 404
