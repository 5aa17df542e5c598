"""The users of the server over the REST API (issue 12: the console's users page): GET/POST
/v1/users and PUT /v1/users/{u} for administrators' login sessions only, GET /v1/users/{u}
for the user or an admin; disabling; and the logout of one login (POST /oauth/revoke)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from roost.app import Roost

from conftest import ADMIN, bearer, create_device, login

ALL_USERS = {"/v1/users": ("GET", None), "/v1/users/bob": ("PUT", {"enabled": False})}


async def add_user(
    http: httpx.AsyncClient, admin: str, name: str = "bob", **fields: Any
) -> httpx.Response:
    body = {"user": name, "password": f"{name}-password", **fields}
    return await http.post("/v1/users", json=body, headers=bearer(admin))


async def grant(http: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    return await http.post(
        "/oauth/token", data={"grant_type": "password", "username": name, "password": password}
    )


async def test_an_admin_lists_creates_reads_and_updates_users(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    made = await add_user(http, admin_token, email="bob@example.com")
    assert made.status_code == 200, made.text
    assert made.json() == {
        "user": "bob",
        "role": "user",
        "enabled": True,
        "created": made.json()["created"],
    }
    assert abs(made.json()["created"] - time.time() * 1000) < 60_000
    listed = await http.get("/v1/users", headers=bearer(admin_token))
    assert [u["user"] for u in listed.json()] == [ADMIN, "bob"]
    assert [u["role"] for u in listed.json()] == ["admin", "user"]
    paged = await http.get("/v1/users?count=1&index=1", headers=bearer(admin_token))
    assert [u["user"] for u in paged.json()] == ["bob"]
    bob = await login(http, "bob", "bob-password")
    me = await http.get("/v1/users/bob", headers=bearer(bob))
    assert me.json() == made.json()
    promoted = await http.put("/v1/users/bob", json={"role": "admin"}, headers=bearer(admin_token))
    assert promoted.json()["role"] == "admin"
    # now an admin, bob lists the users too
    assert (await http.get("/v1/users", headers=bearer(bob))).status_code == 200


async def test_bad_users_are_400(http: httpx.AsyncClient, admin_token: str) -> None:
    assert (await add_user(http, admin_token)).status_code == 200
    again = await add_user(http, admin_token)
    assert again.status_code == 400
    assert again.json() == {"error": {"message": "user 'bob' already exists"}}
    for body in (
        {"user": "a b", "password": "long-enough"},
        {"user": "carol", "password": "short"},
        {"user": "carol", "password": "long-enough", "role": "root"},
        {"user": "carol"},
    ):
        response = await http.post("/v1/users", json=body, headers=bearer(admin_token))
        assert response.status_code == 400, body
    himself = await http.put(
        f"/v1/users/{ADMIN}", json={"enabled": False}, headers=bearer(admin_token)
    )
    assert himself.status_code == 400
    demoted = await http.put(
        f"/v1/users/{ADMIN}", json={"role": "user"}, headers=bearer(admin_token)
    )
    assert demoted.status_code == 400
    missing = await http.put("/v1/users/ghost", json={"enabled": True}, headers=bearer(admin_token))
    assert missing.status_code == 404


async def test_disabling_refuses_logins_and_revokes_refresh_tokens(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await add_user(http, admin_token)
    first = (await grant(http, "bob", "bob-password")).json()
    disabled = await http.put("/v1/users/bob", json={"enabled": False}, headers=bearer(admin_token))
    assert disabled.json()["enabled"] is False
    refused = await grant(http, "bob", "bob-password")
    assert refused.status_code == 403
    assert refused.json() == {"error": {"message": "user 'bob' is disabled"}}
    wrong = await grant(http, "bob", "not-the-password")
    assert wrong.status_code == 401  # the password is checked first: nothing is told
    refresh = await http.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert refresh.status_code == 401
    await http.put("/v1/users/bob", json={"enabled": True}, headers=bearer(admin_token))
    assert (await grant(http, "bob", "bob-password")).status_code == 200


async def test_only_an_admin_session_manages_users(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await add_user(http, admin_token)
    await add_user(http, admin_token, "carol")
    bob = await login(http, "bob", "bob-password")
    everything = {"*": {"*": "*"}}
    made = await http.post(
        f"/v1/users/{ADMIN}/tokens",
        json={"token": "all", "allow": everything},
        headers=bearer(admin_token),
    )
    admin_access = made.json()["access_token"]
    await create_device(http, admin_token)
    device = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens",
        json={"token_name": "d"},
        headers=bearer(admin_token),
    )
    device_jwt = device.json()["token"]
    expired = server.services.signer.access_token(ADMIN, int(time.time()) - 3 * 3600)
    revoked = (
        await http.post(
            f"/v1/users/{ADMIN}/tokens",
            json={"token": "gone", "allow": everything},
            headers=bearer(admin_token),
        )
    ).json()["access_token"]
    await http.delete(f"/v1/users/{ADMIN}/tokens/gone", headers=bearer(admin_token))
    callers = {
        "plain user session": (bob, 403),
        "admin's access token allowing everything": (admin_access, 403),
        "device token": (device_jwt, 403),
        "expired session": (expired, 401),
        "revoked access token": (revoked, 401),
    }
    for path, (method, body) in ALL_USERS.items():
        for caller, (token, status) in callers.items():
            response = await http.request(method, path, json=body, headers=bearer(token))
            assert response.status_code == status, (caller, path, response.text)
        create = await http.post(
            "/v1/users", json={"user": "eve", "password": "eve-password"}, headers=bearer(bob)
        )
        assert create.status_code == 403
    # reading a user: the user themselves or an admin; not another plain user
    assert (await http.get("/v1/users/bob", headers=bearer(bob))).status_code == 200
    assert (await http.get("/v1/users/carol", headers=bearer(bob))).status_code == 403
    assert (await http.get("/v1/users/carol", headers=bearer(admin_token))).status_code == 200
    assert (await http.get("/v1/users/ghost", headers=bearer(admin_token))).status_code == 404
    # bob is still enabled: no refused call changed anything
    assert (await http.get("/v1/users/bob", headers=bearer(bob))).json()["enabled"] is True


async def test_revoke_ends_one_login_only(http: httpx.AsyncClient) -> None:
    one = (await grant(http, ADMIN, "admin-password")).json()
    two = (await grant(http, ADMIN, "admin-password")).json()
    revoked = await http.post("/oauth/revoke", data={"token": one["refresh_token"]})
    assert revoked.status_code == 200
    assert revoked.content == b""
    for token, status in ((one["refresh_token"], 401), (two["refresh_token"], 200)):
        response = await http.post(
            "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token}
        )
        assert response.status_code == status
    # RFC 7009: a token that is not valid is answered 200 as well; an access token is 400
    assert (await http.post("/oauth/revoke", data={"token": "garbage"})).status_code == 200
    access = await http.post("/oauth/revoke", json={"token": two["access_token"]})
    assert access.status_code == 400
    assert (await http.post("/oauth/revoke", data={})).status_code == 400


async def test_a_disabled_admin_holds_no_admin_power_with_a_login_still_valid(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    """The review's escalation: disabled, an admin whose access token has not expired could
    list users, enable themselves again and disable the admin who disabled them."""
    await add_user(http, admin_token, "dave", role="admin")
    await add_user(http, admin_token, "carol")
    dave = await login(http, "dave", "dave-password")
    assert (await http.get("/v1/users", headers=bearer(dave))).status_code == 200
    off = await http.put("/v1/users/dave", json={"enabled": False}, headers=bearer(admin_token))
    assert off.status_code == 200, off.text
    for method, path, body in (
        ("GET", "/v1/users", None),
        ("PUT", "/v1/users/dave", {"enabled": True}),
        ("PUT", f"/v1/users/{ADMIN}", {"enabled": False}),
        ("GET", "/v1/users/carol/devices", None),  # another user's tree
        ("GET", "/metrics", None),
    ):
        answer = await http.request(method, path, json=body, headers=bearer(dave))
        assert answer.status_code == 403, (method, path, answer.text)
    admin_still = await http.get("/v1/users", headers=bearer(admin_token))
    assert [u["enabled"] for u in admin_still.json()] == [True, True, False]
