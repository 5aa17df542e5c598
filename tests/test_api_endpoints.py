"""The endpoints REST API (thinger-api.md 2.11): settings, checks, the list conventions, the
catalogue, and which token may do what (login session, scoped access token, device token,
another user)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from roost import ids
from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.store.base import User

from conftest import ADMIN, bearer, create_device
from endpoint_target import ENDPOINTS

HTTP = {
    "method": "POST",
    "url": "https://api.example.com/sensor/{{id}}",
    "headers": [{"key": "Authorization", "value": "Bearer xyz"}],
    "body": "",
    "body_type": "json",
}
MAIL = {"recipient": "a@example.com", "subject": "{{t}}", "body": "<p>{{t}}</p>"}


async def _create(
    http: httpx.AsyncClient, token: str, endpoint: str = "hook", **fields: Any
) -> httpx.Response:
    body = {"endpoint": endpoint, "type": "http_request", "config": HTTP, **fields}
    return await http.post(ENDPOINTS, json=body, headers=bearer(token))


async def test_endpoint_settings_round_trip(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    created = await _create(http, admin_token, name="Hook", description="to the cloud")
    assert created.status_code == 200, created.text
    made = created.json()
    assert {k: made[k] for k in ("endpoint", "name", "description", "enabled", "type")} == {
        "endpoint": "hook",
        "name": "Hook",
        "description": "to the cloud",
        "enabled": True,
        "type": "http_request",
    }
    assert made["config"] == HTTP and made["created"] == made["modified"]
    assert (await http.get(f"{ENDPOINTS}/hook", headers=auth)).json() == made
    listed = (await http.get(ENDPOINTS, headers=auth)).json()
    assert listed == [{k: v for k, v in made.items() if k != "config"}]  # no credentials listed
    mail = {"type": "email", "config": MAIL, "enabled": False, "name": "Mail"}
    updated = await http.put(f"{ENDPOINTS}/hook", json=mail, headers=auth)
    assert updated.status_code == 200, updated.text
    got = (await http.get(f"{ENDPOINTS}/hook", headers=auth)).json()
    assert (got["type"], got["config"], got["enabled"], got["name"]) == (
        "email",
        MAIL,
        False,
        "Mail",
    )
    assert got["description"] == "to the cloud" and got["created"] == made["created"]
    assert (await http.delete(f"{ENDPOINTS}/hook", headers=auth)).status_code == 200
    assert (await http.get(f"{ENDPOINTS}/hook", headers=auth)).status_code == 404
    assert (await http.delete(f"{ENDPOINTS}/hook", headers=auth)).status_code == 404


async def test_invalid_endpoints_are_refused(http: httpx.AsyncClient, admin_token: str) -> None:
    auth = bearer(admin_token)
    assert (await _create(http, admin_token)).status_code == 200
    bad_configs: list[Any] = [
        {},  # no url
        {**HTTP, "url": "ftp://example.com/"},
        {**HTTP, "url": "example.com"},
        {**HTTP, "method": "TRACE"},
        {**HTTP, "body_type": "xml"},
        {**HTTP, "headers": {"Authorization": "x"}},
        {**HTTP, "headers": [{"key": "X", "value": "a\r\nInjected: 1"}]},
        {**HTTP, "headers": [{"key": "X", "value": "caf\u00e9"}]},  # not ASCII
        {**HTTP, "headers": [{"key": "X", "value": "a\x0bb"}]},  # a control character
        {**HTTP, "headers": [{"key": "X", "value": "a\x7fb"}]},
        {**HTTP, "headers": [{"key": "Bad Name", "value": "x"}]},
        {**HTTP, "headers": [{"key": "Host", "value": "elsewhere"}]},
        {**HTTP, "body": 5},
        [HTTP],
    ]
    for config in bad_configs:
        response = await _create(http, admin_token, "other", config=config)
        assert response.status_code == 400, config
        assert "config" in response.json()["error"]["message"] or "header" in response.text
    for body in (
        {"endpoint": "hook", "type": "http_request", "config": HTTP},  # exists
        {"endpoint": "a-b", "type": "email", "config": MAIL},  # an endpoint id has no '-'
        {"endpoint": "x", "config": MAIL},  # no type
        {"endpoint": "x", "type": "", "config": MAIL},
        {"endpoint": "x", "type": "email", "config": "text"},
    ):
        response = await http.post(ENDPOINTS, json=body, headers=auth)
        assert response.status_code == 400, body
    put = await http.put(f"{ENDPOINTS}/hook", json={"endpoint": "other"}, headers=auth)
    assert put.status_code == 400
    put = await http.put(f"{ENDPOINTS}/hook", json={"config": {"url": "gopher://x"}}, headers=auth)
    assert put.status_code == 400
    assert (await http.put(f"{ENDPOINTS}/absent", json={}, headers=auth)).status_code == 404


async def test_calls_the_server_cannot_make_are_refused(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    created = await http.post(
        ENDPOINTS, json={"endpoint": "mail", "type": "email", "config": MAIL}, headers=auth
    )
    assert created.status_code == 200
    called = await http.post(f"{ENDPOINTS}/mail/call", json={"t": 1}, headers=auth)
    assert called.status_code == 501
    assert "'email'" in called.json()["error"]["message"]
    assert (await _create(http, admin_token, "off", enabled=False)).status_code == 200
    called = await http.post(f"{ENDPOINTS}/off/call", json={}, headers=auth)
    assert (called.status_code, called.json()["error"]["message"]) == (
        400,
        "endpoint 'off' is disabled",
    )
    assert (await http.post(f"{ENDPOINTS}/absent/call", headers=auth)).status_code == 404
    assert (await _create(http, admin_token)).status_code == 200
    not_json = await http.post(f"{ENDPOINTS}/hook/call", content=b"{nope", headers=auth)
    assert not_json.status_code == 400


async def test_the_list_pages_and_filters_as_the_clients_do(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    for n in range(5):
        assert (await _create(http, admin_token, f"e{n}", name=f"Hook {n}")).status_code == 200
    auth = bearer(admin_token)
    page = await http.get(ENDPOINTS, params={"count": 2, "index": 2}, headers=auth)
    assert [e["endpoint"] for e in page.json()] == ["e2", "e3"]
    named = await http.get(ENDPOINTS, params={"name": "HOOK 4"}, headers=auth)
    assert [e["endpoint"] for e in named.json()] == ["e4"]
    assert (await http.get(ENDPOINTS, params={"count": "x"}, headers=auth)).status_code == 400


async def test_the_asset_catalogue_lists_endpoints(http: httpx.AsyncClient) -> None:
    assets = (await http.get("/v1/server/assets")).json()
    endpoint = next(a for a in assets if a["asset"] == "endpoint")
    user = f"(?<user>{ids.USER.regex.pattern})"
    assert endpoint["paths"]["list"] == f"v1/users/{user}/endpoints"


async def _token(http: httpx.AsyncClient, admin_token: str, name: str, allow: Any) -> str:
    body = {"token": name, "allow": allow}
    made = await http.post(f"/v1/users/{ADMIN}/tokens", json=body, headers=bearer(admin_token))
    assert made.status_code == 200, made.text
    token: str = made.json()["access_token"]
    return token


async def _statuses(http: httpx.AsyncClient, token: str) -> dict[str, int]:
    """What each operation on the admin's endpoints answers ``token``. ``mail`` is of a type
    that is kept but not called: 501 shows a call got past authorization, without a request."""
    auth = bearer(token)
    new = {"endpoint": "new", "type": "email", "config": MAIL}
    return {
        "list": (await http.get(ENDPOINTS, headers=auth)).status_code,
        "create": (await http.post(ENDPOINTS, json=new, headers=auth)).status_code,
        "read": (await http.get(f"{ENDPOINTS}/mail", headers=auth)).status_code,
        "update": (await http.put(f"{ENDPOINTS}/mail", json={}, headers=auth)).status_code,
        "call": (await http.post(f"{ENDPOINTS}/mail/call", json={}, headers=auth)).status_code,
        "call other": (await http.post(f"{ENDPOINTS}/hook/call", headers=auth)).status_code,
        "delete": (await http.delete(f"{ENDPOINTS}/new", headers=auth)).status_code,
    }


async def test_each_kind_of_token_may_do_what_it_grants(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    mail = {"endpoint": "mail", "type": "email", "config": MAIL}
    assert (await http.post(ENDPOINTS, json=mail, headers=auth)).status_code == 200
    inside = {**HTTP, "url": "http://127.0.0.1:9/"}  # refused at once: not a public address
    assert (await _create(http, admin_token, config=inside)).status_code == 200
    caller = await _token(http, admin_token, "caller", {"Endpoint": {"mail": ["CallEndpoint"]}})
    assert await _statuses(http, caller) == {
        "list": 403,
        "create": 403,
        "read": 403,
        "update": 403,
        "call": 501,
        "call other": 403,
        "delete": 403,
    }
    reader = await _token(http, admin_token, "reader", {"Endpoint": {"*": ["Read*", "List*"]}})
    assert await _statuses(http, reader) == {
        "list": 200,
        "create": 403,
        "read": 200,
        "update": 403,
        "call": 403,
        "call other": 403,
        "delete": 403,
    }
    devices = await _token(http, admin_token, "devices", {"Device": {"*": "*"}})
    assert set((await _statuses(http, devices)).values()) == {403}
    await create_device(http, admin_token)
    made = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens", json={"token_name": "t"}, headers=auth
    )
    assert set((await _statuses(http, made.json()["token"])).values()) == {403}
    # another user: nothing in the admin's tree, and their own tree apart
    assert server.services is not None
    bob = User("bob", hash_password("bob-password1"), "user", int(time.time() * 1000))
    await server.services.store.create_user(bob)
    login = {"grant_type": "password", "username": "bob", "password": "bob-password1"}
    bob_token = (await http.post("/oauth/token", data=login)).json()["access_token"]
    assert set((await _statuses(http, bob_token)).values()) == {403}
    bobs = "/v1/users/bob/endpoints"
    assert (await http.get(bobs, headers=bearer(bob_token))).json() == []
    # the admin's own session does it all (and may act in bob's tree, as an admin)
    assert await _statuses(http, admin_token) == {
        "list": 200,
        "create": 200,
        "read": 200,
        "update": 200,
        "call": 501,
        "call other": 502,  # refused: 127.0.0.1 is not public
        "delete": 200,
    }
