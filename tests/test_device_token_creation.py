"""Creating a device token never grants more than the creator holds (issue 14 item 2).

The rule: device tokens are created by login sessions only, as access tokens are. No access
token, whatever it is allowed (the two attacks of the issue, and one allowed everything on the
device), and no device token creates one. Every path to the route is tried against a real device.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from roost.app import Roost

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device

DEVICES = f"/v1/users/{ADMIN}/devices"
TOKENS = f"/v1/users/{ADMIN}/tokens"
READING = f"/v2/users/{ADMIN}/devices/dev1/temperature"


@pytest.fixture
async def dev1(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    """dev1 connected with a ``temperature`` output, and dev2 registered."""
    await create_device(http, admin_token, "dev1")
    await create_device(http, admin_token, "dev2", "secret2")
    device = sdk_device(server)
    device.output("temperature", lambda: 21)
    await connect_device(device)


async def access_token(http: httpx.AsyncClient, admin: str, **body: Any) -> dict[str, Any]:
    response = await http.post(TOKENS, json=body, headers=bearer(admin))
    assert response.status_code == 200, response.text
    made: dict[str, Any] = response.json()
    return made


async def mint(
    http: httpx.AsyncClient, token: str, device: str = "dev1", **body: Any
) -> httpx.Response:
    return await http.post(
        f"{DEVICES}/{device}/tokens", json={"token_name": "minted", **body}, headers=bearer(token)
    )


async def minted_count(http: httpx.AsyncClient, admin: str) -> int:
    return len((await http.get(f"{DEVICES}/dev1/tokens", headers=bearer(admin))).json())


async def test_a_wildcard_token_denied_the_devices_resources_cannot_mint_for_it(
    http: httpx.AsyncClient, admin_token: str, dev1: None
) -> None:
    """The first attack: every device action allowed, AccessDeviceResources on dev1 denied."""
    creator = await access_token(
        http,
        admin_token,
        allow={"Device": {"*": ["*"]}},
        deny={"Device": {"dev1": ["AccessDeviceResources"]}},
    )
    token = creator["access_token"]
    assert (await http.get(READING, headers=bearer(token))).status_code == 403

    for device in ("dev1", "dev2"):  # dev2: a device the token may reach
        response = await mint(http, token, device)
        assert response.status_code == 403, response.text
        assert "login session" in response.json()["error"]["message"]
    assert await minted_count(http, admin_token) == 0


async def test_create_device_token_alone_mints_nothing(
    http: httpx.AsyncClient, admin_token: str, dev1: None
) -> None:
    """The second attack: a token allowed only CreateDeviceToken on dev1."""
    creator = await access_token(http, admin_token, allow={"Device": {"dev1": "CreateDeviceToken"}})
    token = creator["access_token"]
    assert (await http.get(READING, headers=bearer(token))).status_code == 403
    assert (await mint(http, token)).status_code == 403
    assert await minted_count(http, admin_token) == 0


@pytest.mark.parametrize("resources", [None, ["temperature"]], ids=["unrestricted", "limited"])
async def test_a_device_token_cannot_mint(
    http: httpx.AsyncClient, admin_token: str, dev1: None, resources: list[str] | None
) -> None:
    made = (await mint(http, admin_token, token_resources=resources)).json()
    assert (await http.get(READING, headers=bearer(made["token"]))).status_code == 200
    assert (await mint(http, made["token"])).status_code == 403
    assert await minted_count(http, admin_token) == 1


async def test_expired_and_deleted_tokens_cannot_mint(
    http: httpx.AsyncClient, admin_token: str, dev1: None
) -> None:
    everything = {"*": {"*": ["*"]}}
    expire = int(time.time() * 1000) + 1200
    expired = await access_token(http, admin_token, allow=everything, expire=expire)
    expired_device = (await mint(http, admin_token, token_expiration=expire)).json()
    deleted = await access_token(http, admin_token, token="gone", allow=everything)
    assert (await http.delete(f"{TOKENS}/gone", headers=bearer(admin_token))).status_code == 200
    deleted_device = (await mint(http, admin_token)).json()
    url = f"{DEVICES}/dev1/tokens/{deleted_device['id']}"
    assert (await http.delete(url, headers=bearer(admin_token))).status_code == 200
    await asyncio.sleep(max(0.0, expire / 1000 - time.time()) + 0.1)

    for token in (
        expired["access_token"],
        expired_device["token"],
        deleted["access_token"],
        deleted_device["token"],
    ):
        assert (await mint(http, token)).status_code == 401
    assert await minted_count(http, admin_token) == 1  # expired_device, as it was made


async def test_a_token_allowed_everything_on_the_device_mints_nothing(
    http: httpx.AsyncClient, admin_token: str, dev1: None
) -> None:
    """Not even a token that reaches the device itself: what it made would outlive its own
    revocation (deleted or disabled, the token's device tokens would go on)."""
    expire = int(time.time() * 1000) + 3_600_000
    creator = await access_token(
        http, admin_token, allow={"Device": {"dev1": ["*"]}}, expire=expire
    )
    token = creator["access_token"]
    assert (await http.get(READING, headers=bearer(token))).json() == {"out": 21}
    assert (await mint(http, token, token_resources=["temperature"])).status_code == 403
    assert await minted_count(http, admin_token) == 0


async def test_a_session_mints_working_tokens(
    http: httpx.AsyncClient, admin_token: str, dev1: None
) -> None:
    made = await mint(http, admin_token, token_resources=["temperature"])
    assert made.status_code == 200
    assert made.json()["expiration"] is None  # a session's tokens keep the expiry they are given
    reading = await http.get(READING, headers=bearer(made.json()["token"]))
    assert reading.json() == {"out": 21}
    other = f"/v2/users/{ADMIN}/devices/dev1/location"
    assert (await http.get(other, headers=bearer(made.json()["token"]))).status_code == 403
