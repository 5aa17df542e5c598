"""OAuth2 password and refresh grants, token checks on every other call."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import jwt

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.store import RefreshToken, User
from roost.store.sqlite import DATABASE_FILE, SQLiteStore

from conftest import ADMIN, ADMIN_PASSWORD, bearer, login, make_settings


async def add_user(server: Roost, name: str, password: str) -> None:
    """Add a user with the real CLI, while the server runs on the same data dir."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "roost.cli",
        "--data-dir",
        str(server.settings.data_dir),
        "user",
        "add",
        name,
        "--password",
        password,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ROOST_DATABASE_URL": server.settings.database_url},  # --store
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    assert name.encode() in out


async def password_grant(http: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    return await http.post(
        "/oauth/token", data={"grant_type": "password", "username": user, "password": password}
    )


async def refresh_grant(http: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


async def test_password_grant_issues_thinger_shaped_tokens(http: httpx.AsyncClient) -> None:
    response = await password_grant(http, ADMIN, ADMIN_PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["expires_in"] == 7200
    assert body["scope"] is None
    assert body["token_type"] == "bearer"
    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(access) == {"usr", "iat", "exp"}
    assert access["usr"] == ADMIN
    assert access["exp"] - access["iat"] == 7200
    assert abs(access["iat"] - time.time()) < 60
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert set(refresh) == {"jti", "iat", "exp"}
    assert refresh["exp"] - refresh["iat"] == 60 * 86400


async def test_json_body_is_accepted_too(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/oauth/token",
        json={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_wrong_password_and_unknown_user_get_the_same_401(http: httpx.AsyncClient) -> None:
    for user, password in ((ADMIN, "wrong-password"), ("nobody", ADMIN_PASSWORD), ("", "")):
        response = await password_grant(http, user, password)
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "invalid username or password"}}


async def test_unknown_grant_and_garbage_bodies_are_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert "grant_type" in response.json()["error"]["message"]
    response = await http.post(
        "/oauth/token", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    response = await http.post(
        "/oauth/token", content=b"\xff\xfe", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400


async def test_refresh_rotates_and_reuse_revokes_the_family(http: httpx.AsyncClient) -> None:
    first = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    second = await refresh_grant(http, first["refresh_token"])
    assert second.status_code == 200
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"]
    me = await http.get(f"/v1/users/{ADMIN}/devices", headers=bearer(second_body["access_token"]))
    assert me.status_code == 200

    third = await refresh_grant(http, second_body["refresh_token"])
    assert third.status_code == 200

    # the old refresh token is spent (and its successor used: no retry, see test_token_holes):
    # reusing it fails and kills the newest one too
    reused = await refresh_grant(http, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.json() == {"error": {"message": "invalid refresh token"}}
    newer = await refresh_grant(http, third.json()["refresh_token"])
    assert newer.status_code == 401

    # another login is unaffected
    other = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    assert (await refresh_grant(http, other["refresh_token"])).status_code == 200


async def test_unknown_or_forged_refresh_tokens_are_refused(http: httpx.AsyncClient) -> None:
    forged = jwt.encode({"jti": "x", "iat": 1, "exp": 2**40}, b"k" * 64, algorithm="HS256")
    for token in ("", "garbage", forged):
        response = await refresh_grant(http, token)
        assert response.status_code == 401
        assert response.json() == {"error": {"message": "invalid refresh token"}}


async def test_access_token_cannot_be_used_as_refresh_token(http: httpx.AsyncClient) -> None:
    body = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    assert (await refresh_grant(http, body["access_token"])).status_code == 401


async def test_refresh_token_is_not_an_access_token(http: httpx.AsyncClient) -> None:
    body = (await password_grant(http, ADMIN, ADMIN_PASSWORD)).json()
    response = await http.get(f"/v1/users/{ADMIN}/devices", headers=bearer(body["refresh_token"]))
    assert response.status_code == 401


async def test_calls_need_a_valid_token(http: httpx.AsyncClient, server: Roost) -> None:
    url = f"/v1/users/{ADMIN}/devices"
    assert (await http.get(url)).status_code == 401
    assert (await http.get(url, headers={"Authorization": "Basic abc"})).status_code == 401
    assert (await http.get(url, headers=bearer("not.a.jwt"))).status_code == 401
    other_key = jwt.encode({"usr": ADMIN, "iat": 1, "exp": 2**40}, b"x" * 64, algorithm="HS256")
    response = await http.get(url, headers=bearer(other_key))
    assert response.status_code == 401
    assert set(response.json()) == {"error"}

    assert server.services is not None
    expired = server.services.signer.access_token(ADMIN, int(time.time()) - 3 * 3600)
    response = await http.get(url, headers=bearer(expired))
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "token expired"}}


async def test_token_in_query_string(http: httpx.AsyncClient) -> None:
    token = await login(http)
    response = await http.get(f"/v1/users/{ADMIN}/devices", params={"authorization": token})
    assert response.status_code == 200
    assert response.json() == []


async def test_users_only_reach_their_own_tree(http: httpx.AsyncClient, server: Roost) -> None:
    await add_user(server, "bob", "bob-password")
    bob = await login(http, "bob", "bob-password")
    assert (await http.get("/v1/users/bob/devices", headers=bearer(bob))).status_code == 200
    response = await http.get(f"/v1/users/{ADMIN}/devices", headers=bearer(bob))
    assert response.status_code == 403
    assert "error" in response.json()
    # an admin may reach any tree
    admin = await login(http)
    assert (await http.get("/v1/users/bob/devices", headers=bearer(admin))).status_code == 200


async def test_lone_surrogates_are_400_not_500(http: httpx.AsyncClient, admin_token: str) -> None:
    body = b'{"grant_type": "password", "username": "admin", "password": "\\ud800"}'
    response = await http.post(
        "/oauth/token", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    device = b'{"device": "d1", "credentials": "abcdef\\ud800"}'
    response = await http.post(
        f"/v1/users/{ADMIN}/devices",
        content=device,
        headers={**bearer(admin_token), "Content-Type": "application/json"},
    )
    assert response.status_code == 400


async def test_expired_refresh_tokens_are_forgotten_from_start_up(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    store = SQLiteStore(settings.data_dir / DATABASE_FILE)
    await store.open()
    now = int(time.time() * 1000)
    await store.create_user(User(ADMIN, hash_password(ADMIN_PASSWORD), "admin", now))
    for jti, expires in (("expired", now - 1), ("live", now + 60_000)):
        token = RefreshToken(jti=jti, user=ADMIN, family=jti, issued=now - 10, expires=expires)
        await store.add_refresh_token(token)
    await store.close()

    roost = Roost(settings)
    await roost.start()
    try:
        left: list[str] = []
        for _ in range(100):
            with sqlite3.connect(settings.data_dir / DATABASE_FILE) as conn:
                left = [jti for (jti,) in conn.execute("SELECT jti FROM refresh_tokens")]
            if left == ["live"]:
                break
            await asyncio.sleep(0.05)
        assert left == ["live"]
    finally:
        await roost.stop()
