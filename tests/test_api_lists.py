"""The asset catalogue (GET /v1/server/assets) and the list conventions of every list (count,
index, name; thinger-api.md 2.2 and 2.20), over real HTTP, paged as the clients page."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from roost.app import Roost

from conftest import ADMIN, bearer, create_device

DEVICES = f"/v1/users/{ADMIN}/devices"
TOKENS = f"/v1/users/{ADMIN}/tokens"
DEVICE_TOKENS = f"/v1/users/{ADMIN}/devices/dev1/tokens"
USER_GROUP = re.compile(r"\(\?<user>[^)]+\)")  # how Node-RED's asset iterator fills the path


async def add_devices(http: httpx.AsyncClient, token: str, ids: list[str]) -> None:
    for device in ids:
        body = {"device": device, "type": "HTTP", "name": f"Name of {device}"}
        response = await http.post(DEVICES, json=body, headers=bearer(token))
        assert response.status_code == 200, response.text


async def get_list(http: httpx.AsyncClient, url: str, token: str, **query: Any) -> list[Any]:
    response = await http.get(url, params=query, headers=bearer(token))
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()
    return items


async def page_all(
    http: httpx.AsyncClient, url: str, token: str, key: str, count: int, **query: Any
) -> list[str]:
    """Every item's id, paged as n8n and Node-RED do: index += len(page) until a short page."""
    seen: list[str] = []
    while True:
        page = await get_list(http, url, token, count=count, index=len(seen), **query)
        assert len(page) <= count
        seen += [item[key] for item in page]
        if len(page) < count:
            return seen


async def test_paging_through_devices_returns_each_once_in_order(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    ids = [f"d{i:03}" for i in range(130, -1, -1)]  # created in the reverse of their order
    await add_devices(http, admin_token, ids)
    for count in (50, 100, 7, 131):
        assert await page_all(http, DEVICES, admin_token, "device", count) == sorted(ids)
    every = [d["device"] for d in await get_list(http, DEVICES, admin_token)]
    assert every == sorted(ids)
    assert [d["device"] for d in await get_list(http, DEVICES, admin_token, count=0)] == every
    assert await get_list(http, DEVICES, admin_token, index=131) == []
    tail = await get_list(http, DEVICES, admin_token, index=129, count="", name="")
    assert [d["device"] for d in tail] == ["d129", "d130"]


async def test_name_filter_matches_id_or_name_in_any_case(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await add_devices(http, admin_token, ["kitchen_1", "kitchen_2", "garage", "Kx1"])
    rename = {"name": "Big Kitchen Lamp"}
    assert (
        await http.put(f"{DEVICES}/garage", json=rename, headers=bearer(admin_token))
    ).is_success

    async def named(name: str, **query: Any) -> list[str]:
        found = await get_list(http, DEVICES, admin_token, name=name, **query)
        return [d["device"] for d in found]

    assert await named("KITCHEN") == ["garage", "kitchen_1", "kitchen_2"]  # by name, by id
    assert await named("tchen_") == ["kitchen_1", "kitchen_2"]
    assert await named("_") == ["kitchen_1", "kitchen_2"]  # "_" is a character, not a wildcard
    assert await named("%") == []
    assert await named("x1") == ["Kx1"]
    assert await named("kitchen", count=1, index=1) == ["kitchen_1"]
    assert await named("kitchen", id="kitchen_2") == ["kitchen_2"]  # with the legacy id filter
    assert await named("garage", id="kitchen_2") == []
    assert await named("", id="garage", index=1) == []


@pytest.mark.parametrize("url", [DEVICES, TOKENS, DEVICE_TOKENS])
@pytest.mark.parametrize(
    "query",
    [
        {"count": "-1"},
        {"count": "1001"},
        {"count": "ten"},
        {"count": "1.5"},
        {"count": "\u0661"},  # a digit, but not an ASCII one
        {"index": "-1"},
        {"index": "1000000001"},
        {"index": "99999999999999999999999"},
        {"index": " 1"},
        {"name": "n" * 129},
    ],
)
async def test_bad_count_index_or_name_is_400(
    http: httpx.AsyncClient, admin_token: str, url: str, query: dict[str, str]
) -> None:
    await create_device(http, admin_token)
    response = await http.get(url, params=query, headers=bearer(admin_token))
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


async def test_access_tokens_page_and_filter(http: httpx.AsyncClient, admin_token: str) -> None:
    ids = [f"tok_{i:02}" for i in range(23)] + ["other"]
    for token_id in ids:
        body = {"token": token_id, "name": "Reporting" if token_id == "other" else token_id}
        response = await http.post(TOKENS, json=body, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
    assert await page_all(http, TOKENS, admin_token, "token", 5) == sorted(ids)
    assert await page_all(http, TOKENS, admin_token, "token", 5, name="PORT") == ["other"]
    assert await page_all(http, TOKENS, admin_token, "token", 10, name="tok_1") == [
        f"tok_1{i}" for i in range(10)
    ]


async def test_device_tokens_page_and_filter(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token)
    made = []
    for i in range(12):
        body = {"token_name": f"{'Phone' if i % 3 == 0 else 'tablet'} {i}"}
        response = await http.post(DEVICE_TOKENS, json=body, headers=bearer(admin_token))
        assert response.status_code == 200, response.text
        made.append(response.json()["id"])
    every = [t["id"] for t in await get_list(http, DEVICE_TOKENS, admin_token)]
    assert sorted(every) == sorted(made)
    assert await page_all(http, DEVICE_TOKENS, admin_token, "id", 5) == every
    phones = await page_all(http, DEVICE_TOKENS, admin_token, "id", 2, name="phone")
    assert phones == [t for t in every if t in made[::3]]


async def test_read_one_device_is_its_list_item(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token)
    one = await http.get(f"{DEVICES}/dev1", headers=bearer(admin_token))
    assert one.status_code == 200
    assert [one.json()] == await get_list(http, DEVICES, admin_token)
    for field in ("device", "name", "description", "type", "enabled", "user", "connection"):
        assert field in one.json()
    assert one.json()["connection"]["active"] is False
    missing = await http.get(f"{DEVICES}/dev2", headers=bearer(admin_token))
    assert missing.status_code == 404


async def test_assets_list_paths_that_work(http: httpx.AsyncClient, admin_token: str) -> None:
    response = await http.get("/v1/server/assets")  # public, as Thinger's
    assert response.status_code == 200
    assets = response.json()
    assert [a["asset"] for a in assets] == ["bucket", "device", "endpoint", "token"]
    await create_device(http, admin_token)
    for asset in assets:
        assert set(asset) == {"asset", "category", "paths", "role"}
        assert asset["role"] in ("user", "admin")
        path = USER_GROUP.sub(ADMIN, asset["paths"]["list"])
        assert not path.startswith("/") and USER_GROUP.search(asset["paths"]["list"])
        items = await get_list(http, f"/{path}", admin_token, count=50, index=0)
        assert isinstance(items, list)
        if asset["asset"] == "device":
            assert [item[asset["asset"]] for item in items] == ["dev1"]  # n8n reads item[asset]


async def test_assets_are_the_same_for_every_caller(
    http: httpx.AsyncClient, admin_token: str, server: Roost
) -> None:
    await create_device(http, admin_token)
    access = await http.post(
        TOKENS,
        json={"token": "lister", "allow": {"Device": {"*": ["ListDevices"]}}},
        headers=bearer(admin_token),
    )
    device = await http.post(DEVICE_TOKENS, json={"token_name": "t"}, headers=bearer(admin_token))
    expired = server.services.signer.access_token(ADMIN, int(time.time()) - 3 * 3600)
    callers = {
        "session": admin_token,
        "access token": access.json()["access_token"],
        "device token": device.json()["token"],
        "expired": expired,
        "garbage": "not-a-jwt",
    }
    public = (await http.get("/v1/server/assets")).json()
    for token in callers.values():
        response = await http.get("/v1/server/assets", headers=bearer(token))
        assert response.status_code == 200
        assert response.json() == public
    # the lists themselves are not public: each token kind gets what it is allowed
    listed = {
        asset["asset"]: "/" + USER_GROUP.sub(ADMIN, asset["paths"]["list"]) for asset in public
    }
    expected = {
        ("access token", "device"): 200,
        ("access token", "token"): 403,
        ("access token", "bucket"): 403,
        ("session", "bucket"): 200,
        ("device token", "bucket"): 403,
        ("device token", "device"): 403,
        ("device token", "token"): 403,
        ("expired", "device"): 401,
        ("garbage", "token"): 401,
        ("session", "token"): 200,
    }
    for (caller, asset), status in expected.items():
        response = await http.get(
            listed[asset], params={"count": 1}, headers=bearer(callers[caller])
        )
        assert response.status_code == status, (caller, asset, response.text)
    anonymous = await http.get(listed["device"], params={"count": 1})
    assert anonymous.status_code == 401
