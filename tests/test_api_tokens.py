"""User access tokens and the one authorization path, over real HTTP; refresh-token revocation
and password changes; the `roost user logout|passwd` admin commands against a running server."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from roost.app import Roost
from roost.config import Settings

from conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    DeviceFactory,
    bearer,
    create_device,
    login,
    make_settings,
)

TOKENS = f"/v1/users/{ADMIN}/tokens"
DEVICES = f"/v1/users/{ADMIN}/devices"
PUBLIC_HOST = "iot.example.com:8443"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", public_host=PUBLIC_HOST)


async def make_token(
    http: httpx.AsyncClient, admin: str, user: str = ADMIN, **body: Any
) -> dict[str, Any]:
    response = await http.post(f"/v1/users/{user}/tokens", json=body, headers=bearer(admin))
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert isinstance(response.json()["error"]["message"], str)


async def cli(server: Roost, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "roost.cli", "--data-dir", str(server.settings.data_dir), *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def add_user(server: Roost, name: str, password: str) -> None:
    code, out = await cli(server, "user", "add", name, "--password", password)
    assert code == 0, out


# -- the token resource -----------------------------------------------------------------------


async def test_create_read_list_update_delete(http: httpx.AsyncClient, admin_token: str) -> None:
    allow = {"Bucket": {"mqtt_bucket": ["ReadBucket"]}, "Device": {"*": "AccessDeviceResources"}}
    created = await make_token(
        http, admin_token, token="shared_access", name="Shared Access", enabled=True, allow=allow
    )
    assert created["token"] == "shared_access"
    assert created["name"] == "Shared Access"
    assert created["enabled"] is True
    assert created["description"] == ""
    assert created["expire"] is None
    assert created["deny"] == {}
    # action values come back as arrays, whatever shape they were given in
    assert created["allow"] == {
        "Bucket": {"mqtt_bucket": ["ReadBucket"]},
        "Device": {"*": ["AccessDeviceResources"]},
    }
    nonce = claims(created["access_token"])["nonce"]  # of this record: see test_token_holes
    assert isinstance(nonce, str) and len(nonce) >= 16
    assert claims(created["access_token"]) == {
        "usr": ADMIN,
        "jti": "shared_access",
        "svr": PUBLIC_HOST,
        "nonce": nonce,
    }  # and no exp: it never expires

    url = f"{TOKENS}/shared_access"
    read = (await http.get(url, headers=bearer(admin_token))).json()
    assert read == created  # the same JWT, readable by its owner later
    listed = (await http.get(TOKENS, headers=bearer(admin_token))).json()
    assert listed == [
        {k: created[k] for k in ("token", "name", "description", "enabled", "expire")}
        | {"created": created["created"], "modified": created["modified"]}
    ]

    updated = await http.put(
        url,
        json={"name": "Renamed", "description": "for the dashboard"},
        headers=bearer(admin_token),
    )
    assert updated.status_code == 200
    body = updated.json()
    assert (body["name"], body["description"], body["allow"]) == (
        "Renamed",
        "for the dashboard",
        created["allow"],
    )
    assert body["modified"] >= created["modified"] and body["created"] == created["created"]
    assert body["access_token"] == created["access_token"]

    assert (await http.delete(url, headers=bearer(admin_token))).status_code == 200
    assert_error(await http.get(url, headers=bearer(admin_token)), 404)
    assert_error(await http.delete(url, headers=bearer(admin_token)), 404)
    assert (await http.get(TOKENS, headers=bearer(admin_token))).json() == []


async def test_id_is_generated_and_defaults_apply(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    created = await make_token(http, admin_token)
    assert created["token"] and created["name"] == created["token"]
    assert created["enabled"] is True and created["allow"] == {} and created["deny"] == {}
    assert claims(created["access_token"])["jti"] == created["token"]
    # a token that grants nothing works as a token, and is refused everything
    assert_error(await http.get(DEVICES, headers=bearer(created["access_token"])), 403)


async def test_expiring_token(http: httpx.AsyncClient, admin_token: str) -> None:
    expire = int(time.time() * 1000) + 1500
    allow = {"Device": {"*": ["ListDevices"]}}
    created = await make_token(http, admin_token, token="brief", expire=expire, allow=allow)
    assert created["expire"] == expire
    assert claims(created["access_token"])["exp"] == expire // 1000
    token = created["access_token"]
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200
    await asyncio.sleep(max(0.0, expire / 1000 - time.time()) + 0.1)
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "token expired"
    # extending it gives a new JWT that works; clearing expire drops the exp claim
    later = int(time.time() * 1000) + 3_600_000
    renewed = await http.put(f"{TOKENS}/brief", json={"expire": later}, headers=bearer(admin_token))
    assert claims(renewed.json()["access_token"])["exp"] == later // 1000
    assert (await http.get(DEVICES, headers=bearer(renewed.json()["access_token"]))).is_success
    forever = await http.put(f"{TOKENS}/brief", json={"expire": None}, headers=bearer(admin_token))
    assert forever.json()["expire"] is None
    assert "exp" not in claims(forever.json()["access_token"])


@pytest.mark.parametrize(
    "body",
    [
        {"token": "has-dash"},
        {"token": "x" * 51},
        {"token": ""},
        {"token": 7},
        {"token": "../etc"},
        {"name": 5},
        {"name": "x" * 256},
        {"description": ["x"]},
        {"enabled": "yes"},
        {"allow": "everything"},
        {"allow": {"Device": {}}},
        {"allow": {"Device": {"dev*": ["ReadDeviceStatus"]}}},
        {"allow": {"Device": {"*": [5]}}},
        {"deny": {"*": {"*": "Read**"}}},
        {"expire": "tomorrow"},
        {"expire": True},
        {"expire": 1_700_000_000},  # seconds, not ms: in the past
        {"expire": 10**30},
    ],
)
async def test_bad_bodies_are_400(
    http: httpx.AsyncClient, admin_token: str, body: dict[str, Any]
) -> None:
    assert_error(await http.post(TOKENS, json=body, headers=bearer(admin_token)), 400)
    assert (await http.get(TOKENS, headers=bearer(admin_token))).json() == []


async def test_duplicate_id_and_id_change_are_400(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await make_token(http, admin_token, token="t1")
    assert_error(await http.post(TOKENS, json={"token": "t1"}, headers=bearer(admin_token)), 400)
    same = await http.put(f"{TOKENS}/t1", json={"token": "t1"}, headers=bearer(admin_token))
    assert same.status_code == 200
    other = await http.put(f"{TOKENS}/t1", json={"token": "t2"}, headers=bearer(admin_token))
    assert_error(other, 400)
    missing = await http.put(f"{TOKENS}/nope", json={"name": "x"}, headers=bearer(admin_token))
    assert_error(missing, 404)


# -- the permission grammar, enforced -----------------------------------------------------------


async def test_read_bucket_only_cannot_list_devices(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    allow = {"Bucket": {"mqtt_bucket": ["ReadBucket"]}}
    token = (await make_token(http, admin_token, allow=allow))["access_token"]
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 403)
    assert "ListDevices" in response.json()["error"]["message"]
    assert_error(await http.get(TOKENS, headers=bearer(token)), 403)


async def test_read_wildcard_reads_but_does_not_delete(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token, "dev1")
    allow = {"Device": {"*": ["Read*"]}}
    token = (await make_token(http, admin_token, allow=allow))["access_token"]
    stats = await http.get(f"{DEVICES}/dev1/stats", headers=bearer(token))
    assert stats.status_code == 200 and stats.json()["connected"] is False
    assert (await http.get(f"{DEVICES}/dev1", headers=bearer(token))).status_code == 200
    assert_error(await http.delete(f"{DEVICES}/dev1", headers=bearer(token)), 403)
    assert_error(await http.get(DEVICES, headers=bearer(token)), 403)  # List*, not Read*
    assert (await http.get(f"{DEVICES}/dev1", headers=bearer(admin_token))).status_code == 200


async def test_deny_on_one_device_beats_allow_on_all(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    for device in ("dev1", "dev2"):
        await create_device(http, admin_token, device)
    created = await make_token(
        http,
        admin_token,
        allow={"*": {"*": "*"}},
        deny={"Device": {"dev2": ["*"]}},
    )
    token = created["access_token"]
    assert (await http.get(f"{DEVICES}/dev1", headers=bearer(token))).status_code == 200
    assert_error(await http.get(f"{DEVICES}/dev2", headers=bearer(token)), 403)
    assert_error(await http.get(f"{DEVICES}/dev2/stats", headers=bearer(token)), 403)
    assert_error(await http.delete(f"{DEVICES}/dev2", headers=bearer(token)), 403)
    # the collection is not the denied device: listing still works
    listed = await http.get(DEVICES, headers=bearer(token))
    assert [d["device"] for d in listed.json()] == ["dev1", "dev2"]


async def test_disable_and_delete_stop_a_token_at_once(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    allow = {"Device": {"*": ["ListDevices"]}}
    token = (await make_token(http, admin_token, token="ci", allow=allow))["access_token"]
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200

    await http.put(f"{TOKENS}/ci", json={"enabled": False}, headers=bearer(admin_token))
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "token disabled"
    await http.put(f"{TOKENS}/ci", json={"enabled": True}, headers=bearer(admin_token))
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200

    # narrowing the permissions applies to the JWT already handed out
    await http.put(f"{TOKENS}/ci", json={"allow": {}}, headers=bearer(admin_token))
    assert_error(await http.get(DEVICES, headers=bearer(token)), 403)

    await http.delete(f"{TOKENS}/ci", headers=bearer(admin_token))
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "token revoked"
    # a new token with the same id is not the old one come back: the old JWT stays revoked
    await make_token(http, admin_token, token="ci", allow=allow)
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "token revoked"


async def test_thinger_cloud_tokens_with_unknown_names_still_work(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token, "dev1")
    allow = {
        "Device": {
            "*": ["ListDevices", "GetDeviceStats", "SetDeviceProperty", "ListDeviceResources"]
        },
        "Plugin": {"node-red": "*"},
        "Bucket": {"*": ["ExportBucket", {"filter": ["a", "b"]}]},
        "Project": {"owner@home": ["ReadProjectConfig"]},
    }
    created = await make_token(http, admin_token, allow=allow)
    assert created["allow"]["Bucket"]["*"][1] == {"filter": ["a", "b"]}  # kept as given
    token = created["access_token"]
    listed = await http.get(DEVICES, headers=bearer(token))
    assert [d["device"] for d in listed.json()] == ["dev1"]
    assert_error(await http.get(f"{DEVICES}/dev1/stats", headers=bearer(token)), 403)
    assert_error(await http.post(DEVICES, json={"device": "x"}, headers=bearer(token)), 403)


async def test_a_token_acts_in_its_owners_tree_only(
    http: httpx.AsyncClient, admin_token: str, server: Roost
) -> None:
    await add_user(server, "bob", "bob-password")
    token = (await make_token(http, admin_token, allow={"*": {"*": "*"}}))["access_token"]
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200
    assert_error(await http.get("/v1/users/bob/devices", headers=bearer(token)), 403)
    # bob's own token, made by bob, works in bob's tree only
    bob = await login(http, "bob", "bob-password")
    bobs = (await make_token(http, bob, user="bob", allow={"*": {"*": "*"}}))["access_token"]
    assert (await http.get("/v1/users/bob/devices", headers=bearer(bobs))).status_code == 200
    assert_error(await http.get(DEVICES, headers=bearer(bobs)), 403)
    # an admin may manage bob's tokens; bob may not manage the admin's
    assert (await http.get("/v1/users/bob/tokens", headers=bearer(admin_token))).is_success
    assert_error(await http.get(TOKENS, headers=bearer(bob)), 403)


async def test_tokens_manage_tokens_only_when_allowed(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    reader = await make_token(http, admin_token, allow={"Token": {"*": ["Read*", "List*"]}})
    token = reader["access_token"]
    assert (await http.get(TOKENS, headers=bearer(token))).status_code == 200
    assert (await http.get(f"{TOKENS}/{reader['token']}", headers=bearer(token))).is_success
    assert_error(await http.post(TOKENS, json={}, headers=bearer(token)), 403)
    assert_error(await http.delete(f"{TOKENS}/{reader['token']}", headers=bearer(token)), 403)


async def test_resource_calls_through_a_user_token(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token, "dev1")
    await create_device(http, admin_token, "dev2", "secret2")
    for name, secret in (("dev1", "secret1"), ("dev2", "secret2")):
        device = await connect_device(name=name, credentials=secret, wait=False)
        device.output("temperature", lambda: 21)
        await device.wait_connected(5)
    allow = {"Device": {"dev1": ["AccessDeviceResources"]}}
    token = (await make_token(http, admin_token, allow=allow))["access_token"]
    base = f"/v2/users/{ADMIN}/devices"
    ok = await http.get(f"{base}/dev1/temperature", headers=bearer(token))
    assert ok.status_code == 200 and ok.json() == {"out": 21}
    assert_error(await http.get(f"{base}/dev2/temperature", headers=bearer(token)), 403)
    assert_error(await http.get(f"{DEVICES}/dev1/stats", headers=bearer(token)), 403)


async def test_device_tokens_take_the_same_path(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token, "dev1")
    made = await http.post(
        f"{DEVICES}/dev1/tokens", json={"token_name": "t"}, headers=bearer(admin_token)
    )
    token = made.json()["token"]
    for url in (DEVICES, f"{DEVICES}/dev1", f"{DEVICES}/dev1/stats", TOKENS):
        assert_error(await http.get(url, headers=bearer(token)), 403)
    assert_error(await http.delete(f"{DEVICES}/dev1", headers=bearer(token)), 403)


# -- refresh tokens and passwords ----------------------------------------------------------------


async def password_grant(http: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": user, "password": password}
    return await http.post("/oauth/token", data=form)


async def refresh(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await http.post("/oauth/token", data=form)


async def test_log_out_everywhere(http: httpx.AsyncClient, server: Roost) -> None:
    await add_user(server, "bob", "bob-password")
    sessions = [(await password_grant(http, ADMIN, ADMIN_PASSWORD)).json() for _ in range(2)]
    bob = (await password_grant(http, "bob", "bob-password")).json()
    url = f"/v1/users/{ADMIN}/refresh_tokens"
    assert_error(await http.delete(url, headers=bearer(bob["access_token"])), 403)

    response = await http.delete(url, headers=bearer(sessions[0]["access_token"]))
    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    for session in sessions:
        assert_error(await refresh(http, session["refresh_token"]), 401)
    assert (await refresh(http, bob["refresh_token"])).status_code == 200  # others unaffected
    # a new login works, and an admin may log bob out
    fresh = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    assert (await refresh(http, fresh["refresh_token"])).status_code == 200
    admin = bearer(fresh["access_token"])
    assert (await http.delete("/v1/users/bob/refresh_tokens", headers=admin)).json() == {
        "revoked": 1
    }
    assert_error(await http.delete("/v1/users/ghost/refresh_tokens", headers=admin), 404)


async def test_change_own_password(http: httpx.AsyncClient, server: Roost) -> None:
    await add_user(server, "bob", "bob-password")
    first = (await password_grant(http, "bob", "bob-password")).json()
    url, auth = "/v1/users/bob/password", bearer(first["access_token"])
    assert_error(await http.put(url, json={"password": "new-password"}, headers=auth), 400)
    wrong = {"password": "new-password", "current_password": "guess"}
    assert_error(await http.put(url, json=wrong, headers=auth), 403)
    short = {"password": "abc", "current_password": "bob-password"}
    assert_error(await http.put(url, json=short, headers=auth), 400)
    assert (await password_grant(http, "bob", "bob-password")).status_code == 200  # unchanged

    good = {"password": "new-password", "current_password": "bob-password"}
    response = await http.put(url, json=good, headers=auth)
    assert response.status_code == 200
    assert response.json() == {"revoked": 2}
    assert_error(await refresh(http, first["refresh_token"]), 401)
    assert_error(await password_grant(http, "bob", "bob-password"), 401)
    assert (await password_grant(http, "bob", "new-password")).status_code == 200


async def test_admin_sets_another_users_password(
    http: httpx.AsyncClient, server: Roost, admin_token: str
) -> None:
    await add_user(server, "bob", "bob-password")
    bob = (await password_grant(http, "bob", "bob-password")).json()
    response = await http.put(
        "/v1/users/bob/password", json={"password": "reset-by-admin"}, headers=bearer(admin_token)
    )
    assert response.status_code == 200
    assert_error(await refresh(http, bob["refresh_token"]), 401)
    assert (await password_grant(http, "bob", "reset-by-admin")).status_code == 200
    # bob may not set the admin's
    other = await http.put(
        f"/v1/users/{ADMIN}/password",
        json={"password": "hijacked", "current_password": "reset-by-admin"},
        headers=bearer(bob["access_token"]),
    )
    assert_error(other, 403)
    missing = await http.put(
        "/v1/users/ghost/password", json={"password": "whatever"}, headers=bearer(admin_token)
    )
    assert_error(missing, 404)


async def test_cli_logout_and_passwd_on_a_running_server(
    http: httpx.AsyncClient, server: Roost
) -> None:
    session = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    code, out = await cli(server, "user", "logout", ADMIN)
    assert code == 0, out
    assert f"revoked 1 refresh token(s) of {ADMIN!r}" in out
    assert_error(await refresh(http, session["refresh_token"]), 401)

    session = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    code, out = await cli(server, "user", "passwd", ADMIN, "--password", "changed-by-cli")
    assert code == 0, out
    assert "revoked 1" in out and "changed-by-cli" not in out
    assert_error(await refresh(http, session["refresh_token"]), 401)
    assert (await password_grant(http, ADMIN, "changed-by-cli")).status_code == 200

    for args in (["logout"], ["passwd", "--password", "whatever"]):
        code, out = await cli(server, "user", *args[:1], "ghost", *args[1:])
        assert code == 1 and "no user 'ghost'" in out


async def test_sessions_skip_the_database_and_tokens_take_one_lookup(
    http: httpx.AsyncClient, admin_token: str, server: Roost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path: a session in its own tree is checked from the JWT alone; a user or device
    token costs one primary-key lookup."""
    await create_device(http, admin_token, "dev1")
    user_token = (await make_token(http, admin_token, allow={"*": {"*": "*"}}))["access_token"]
    made = await http.post(
        f"{DEVICES}/dev1/tokens", json={"token_name": "t"}, headers=bearer(admin_token)
    )
    device_token = made.json()["token"]
    assert server.services is not None
    store = server.services.store
    lookups: list[str] = []
    for name in ("get_user", "get_access_token", "get_device_token"):
        original = getattr(store, name)

        async def counted(*args: Any, _name: str = name, _original: Any = original) -> Any:
            lookups.append(_name)
            return await _original(*args)

        monkeypatch.setattr(store, name, counted)

    assert (await http.get(DEVICES, headers=bearer(admin_token))).status_code == 200
    assert lookups == []
    assert (await http.get(DEVICES, headers=bearer(user_token))).status_code == 200
    assert lookups == ["get_access_token"]
    lookups.clear()
    response = await http.get(
        f"/v2/users/{ADMIN}/devices/dev1/temperature", headers=bearer(device_token)
    )
    assert response.status_code == 404  # offline, but authorized
    assert lookups == ["get_device_token"]


async def test_a_token_cannot_mint_a_stronger_token(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    minter = await make_token(
        http, admin_token, allow={"Token": {"*": ["CreateToken", "UpdateToken"]}}
    )
    token = minter["access_token"]
    wider = {"token": "wider", "allow": {"*": {"*": ["*"]}}}
    assert_error(await http.post(TOKENS, json=wider, headers=bearer(token)), 403)
    grow = {"allow": {"*": {"*": ["*"]}}}
    assert_error(
        await http.put(f"{TOKENS}/{minter['token']}", json=grow, headers=bearer(token)), 403
    )
    assert (await http.get(f"{TOKENS}/wider", headers=bearer(admin_token))).status_code == 404
