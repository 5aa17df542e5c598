"""The token holes of issue 14 item 8, each reproduced as the review found it, over real HTTP:
non-canonical JWT spellings, re-created access tokens, ``?%61uthorization=``, deny rules Roost
cannot honour, and refresh rotations whose answer was lost."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.auth.tokens import REFRESH_RETRY_S
from roost.config import Settings
from roost.store.base import AccessToken
from roost.store.migrate import apply_migrations, load_migrations
from roost.store.sqlite import DATABASE_FILE

from conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    DeviceFactory,
    bearer,
    create_device,
    login,
    make_settings,
)

DEVICES = f"/v1/users/{ADMIN}/devices"
TOKENS = f"/v1/users/{ADMIN}/tokens"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def assert_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"]["message"], str)


# -- f. one spelling per JWT ------------------------------------------------------------------


def same_bytes_other_spelling(token: str) -> str:
    """The token with the unused low bit of its signature's last character set: base64url of the
    very same bytes, which a lenient decoder accepts."""
    head, payload, signature = token.split(".")
    unused_bits = (6 * len(signature)) % 8
    assert unused_bits, "a 32-byte HMAC in base64url leaves 2 bits unused"
    last = B64URL[B64URL.index(signature[-1]) ^ 1]
    variant = signature[:-1] + last
    decode = base64.urlsafe_b64decode
    assert decode(variant + "=" * (-len(variant) % 4)) == decode(signature + "=")
    return f"{head}.{payload}.{variant}"


@pytest.mark.parametrize("spell", ["padded", "double padded", "unused bits set"])
async def test_non_canonical_spellings_of_a_valid_token_are_refused(
    http: httpx.AsyncClient, spell: str
) -> None:
    token = await login(http)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200  # now cached
    variant = {
        "padded": token + "=",
        "double padded": token + "==",
        "unused bits set": same_bytes_other_spelling(token),
    }[spell]
    assert_error(await http.get(DEVICES, headers=bearer(variant)), 401)
    assert_error(await http.get(DEVICES, params={"authorization": variant}), 401)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200


async def test_a_non_canonical_spelling_is_refused_before_the_canonical_one_is_seen(
    http: httpx.AsyncClient,
) -> None:
    token = await login(http)
    assert_error(await http.get(DEVICES, headers=bearer(same_bytes_other_spelling(token))), 401)
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200


# -- a. a token created again under the same id is a new token --------------------------------


async def make_token(http: httpx.AsyncClient, admin: str, **body: Any) -> str:
    response = await http.post(TOKENS, json=body, headers=bearer(admin))
    assert response.status_code == 200, response.text
    jwt_text: str = response.json()["access_token"]
    return jwt_text


async def test_a_deleted_token_created_again_does_not_revive_its_old_jwt(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    body = {"token": "ci_deploy", "allow": {"Device": {"*": ["ListDevices"]}}}
    leaked = await make_token(http, admin_token, **body)
    assert (await http.get(DEVICES, headers=bearer(leaked))).status_code == 200
    assert (
        await http.delete(f"{TOKENS}/ci_deploy", headers=bearer(admin_token))
    ).status_code == 200
    assert_error(await http.get(DEVICES, headers=bearer(leaked)), 401)

    fresh = await make_token(http, admin_token, **body)
    assert fresh != leaked
    response = await http.get(DEVICES, headers=bearer(leaked))
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "token revoked"
    assert (await http.get(DEVICES, headers=bearer(fresh))).status_code == 200
    # the same record keeps giving the same JWT, across updates too
    shown = await http.get(f"{TOKENS}/ci_deploy", headers=bearer(admin_token))
    assert shown.json()["access_token"] == fresh
    updated = await http.put(
        f"{TOKENS}/ci_deploy", json={"name": "deploys"}, headers=bearer(admin_token)
    )
    assert updated.json()["access_token"] == fresh


async def test_a_device_token_created_again_is_a_new_token(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    # Device token ids are drawn at random, never chosen by the client: nothing to revive.
    await create_device(http, admin_token)
    tokens = f"{DEVICES}/dev1/tokens"
    body = {"token_name": "panel", "token_resources": ["temperature"]}
    first = (await http.post(tokens, json=body, headers=bearer(admin_token))).json()
    assert (await http.delete(f"{tokens}/{first['id']}", headers=bearer(admin_token))).is_success
    second = (await http.post(tokens, json=body, headers=bearer(admin_token))).json()
    assert second["id"] != first["id"] and second["token"] != first["token"]
    assert_error(await http.get(f"{DEVICES}/dev1/temperature", headers=bearer(first["token"])), 401)


async def test_tokens_stored_before_nonces_keep_their_jwt_until_created_again(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = sqlite3.connect(data_dir / DATABASE_FILE, isolation_level=None)
    apply_migrations(conn, load_migrations()[:3])  # the schema before nonces
    conn.execute("INSERT INTO users VALUES (?, ?, 'admin', 0)", (ADMIN, hash_password("pw1234")))
    conn.execute(
        "INSERT INTO access_tokens VALUES (?, 'old', 'old', '', 1, ?, '{}', NULL, 0, 0)",
        (ADMIN, json.dumps({"Device": {"*": ["ListDevices"]}})),
    )
    conn.close()
    roost = Roost(make_settings(data_dir))
    await roost.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            admin = await login(http, ADMIN, "pw1234")
            shown = (await http.get(f"{TOKENS}/old", headers=bearer(admin))).json()
            old_jwt = shown["access_token"]
            assert "nonce" not in claims(old_jwt)  # the very JWT handed out before the upgrade
            assert (await http.get(DEVICES, headers=bearer(old_jwt))).status_code == 200
            await http.delete(f"{TOKENS}/old", headers=bearer(admin))
            again = await make_token(http, admin, token="old", allow={"Device": {"*": "*"}})
            assert claims(again)["nonce"]
            assert_error(await http.get(DEVICES, headers=bearer(old_jwt)), 401)
            assert (await http.get(DEVICES, headers=bearer(again))).status_code == 200
    finally:
        await roost.stop()


# -- c. a deny rule Roost cannot enforce is refused, not ignored ------------------------------


@pytest.mark.parametrize(
    ("deny", "named"),
    [
        ({"Device": {"dev1": ["AccesDeviceResources"]}}, "AccesDeviceResources"),  # a typo
        ({"Devices": {"*": ["*"]}}, "Devices"),
        ({"Device": {"*": ["Acess*"]}}, "Acess*"),  # a prefix of nothing
        # ids no device can have, and no action at all (the red team's F4)
        ({"Device": {"admin@dev1": ["AccessDeviceResources"]}}, '"admin@dev1"'),
        ({"Device": {"plugin:dev1": ["AccessDeviceResources"]}}, '"plugin:dev1"'),
        ({"Device": {"dev1" + "x" * 29: ["AccessDeviceResources"]}}, "dev1" + "x" * 29),
        ({"Device": {"dev1": []}}, 'deny["Device"]["dev1"]: must name at least one action'),
    ],
)
async def test_a_deny_rule_that_would_deny_nothing_is_refused(
    http: httpx.AsyncClient, admin_token: str, deny: dict[str, Any], named: str
) -> None:
    allow = {"Device": {"*": ["*"]}}
    body = {"token": "panel", "allow": allow, "deny": deny}
    response = await http.post(TOKENS, json=body, headers=bearer(admin_token))
    assert_error(response, 400)
    assert named in response.json()["error"]["message"]
    assert (await http.get(f"{TOKENS}/panel", headers=bearer(admin_token))).status_code == 404

    await make_token(http, admin_token, token="panel", allow=allow)
    response = await http.put(f"{TOKENS}/panel", json={"deny": deny}, headers=bearer(admin_token))
    assert_error(response, 400)
    assert named in response.json()["error"]["message"]
    # unknown names in allow are still kept (tokens written for the Thinger cloud)
    response = await http.put(
        f"{TOKENS}/panel", json={"allow": {**allow, **deny}}, headers=bearer(admin_token)
    )
    assert response.status_code == 200, response.text


async def test_a_deny_on_a_device_is_kept_only_when_it_can_match_the_device(
    http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    # the red team's F4: each of these left dev1 readable by a token meant to be kept out of it
    await create_device(http, admin_token, "dev1")
    await create_device(http, admin_token, "dev2", "secret2")
    for name, secret in (("dev1", "secret1"), ("dev2", "secret2")):
        device = await connect_device(name=name, credentials=secret, wait=False)
        device.output("temperature", lambda: 21)
        await device.wait_connected(5)
    allow = {"Device": {"*": ["*"]}}
    for dev1 in ("admin@dev1", "own:dev1", "dev1" + "_" * 29):
        deny = {"Device": {dev1: ["AccessDeviceResources"]}}
        response = await http.post(
            TOKENS, json={"allow": allow, "deny": deny}, headers=bearer(admin_token)
        )
        assert_error(response, 400)
        assert dev1 in response.json()["error"]["message"]
    response = await http.post(
        TOKENS, json={"allow": allow, "deny": {"Device": {"dev1": []}}}, headers=bearer(admin_token)
    )
    assert_error(response, 400)
    assert (await http.get(TOKENS, headers=bearer(admin_token))).json() == []  # none was made
    # the deny that names dev1 as a device id is taken and holds
    token = await make_token(
        http, admin_token, allow=allow, deny={"Device": {"dev1": ["AccessDeviceResources"]}}
    )
    base = f"/v2/users/{ADMIN}/devices"
    assert_error(await http.get(f"{base}/dev1/temperature", headers=bearer(token)), 403)
    read = await http.get(f"{base}/dev2/temperature", headers=bearer(token))
    assert read.status_code == 200 and read.json() == {"out": 21}


@pytest.mark.parametrize(
    "deny", [{"Device": {"admin@dev1": ["AccessDeviceResources"]}}, {"Device": {"dev1": []}}]
)
async def test_a_stored_deny_rule_that_can_match_nothing_refuses_the_token(
    http: httpx.AsyncClient, admin_token: str, server: Roost, deny: dict[str, Any]
) -> None:
    # as a database written before such deny rules were refused may hold
    record = AccessToken(ADMIN, "old", "old", "", True, {"*": {"*": ["*"]}}, deny, None, 0, 0)
    assert server.services is not None
    await server.services.store.create_access_token(record)
    token = (await http.get(f"{TOKENS}/old", headers=bearer(admin_token))).json()["access_token"]
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert "token refused until its deny rules are fixed" in response.json()["error"]["message"]
    # setting its deny again brings it back
    fixed = {"deny": {"Device": {"dev1": ["AccessDeviceResources"]}}}
    assert (await http.put(f"{TOKENS}/old", json=fixed, headers=bearer(admin_token))).is_success
    assert (await http.get(DEVICES, headers=bearer(token))).status_code == 200


async def test_a_stored_deny_rule_roost_cannot_enforce_refuses_the_token(
    http: httpx.AsyncClient, admin_token: str, server: Roost
) -> None:
    # as a database written before deny rules were checked may hold
    record = AccessToken(
        ADMIN, "old", "old", "", True, {"*": {"*": ["*"]}}, {"Device": {"*": ["Frob"]}}, None, 0, 0
    )
    assert server.services is not None
    await server.services.store.create_access_token(record)
    token = (await http.get(f"{TOKENS}/old", headers=bearer(admin_token))).json()["access_token"]
    response = await http.get(DEVICES, headers=bearer(token))
    assert_error(response, 401)
    assert "deny rules" in response.json()["error"]["message"]


# -- b. ?%61uthorization= is no token, and never logged ---------------------------------------


async def test_an_encoded_authorization_name_is_no_token_and_stays_out_of_the_logs(
    server: Roost, http: httpx.AsyncClient, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await create_device(http, admin_token)
    secret = admin_token.split(".")[2]
    streams = f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
    for name in ("%61uthorization", "authoriz%61tion", "%2561uthorization"):
        response = await http.get(f"{DEVICES}?{name}={admin_token}")
        assert_error(response, 401)
        assert response.json()["error"]["message"] == "missing access token"
        url = f"{streams}?{name}={admin_token}"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 401
    # the plain spelling is the token, as before
    assert (await http.get(f"{DEVICES}?authorization={admin_token}")).status_code == 200
    async with connect(f"{streams}?authorization={admin_token}"):
        pass

    server_lines = [
        r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "roost"))
    ]
    assert any("%61uthorization=***" in line for line in server_lines)  # it logged the line...
    assert not [line for line in server_lines if secret in line]  # ...never the token


# -- e. a refresh whose answer was lost can be retried, briefly -------------------------------


class MovableClock:
    """The server's wall clock, which a test sets back to play the past: tokens issued then are
    verified at the real time, never issued in the future (PyJWT refuses an ``iat`` to come)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def clocked(
    settings: Settings,
) -> AsyncIterator[tuple[httpx.AsyncClient, MovableClock]]:
    clock = MovableClock()
    roost = Roost(settings, clock=clock)
    await roost.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            yield http, clock
    finally:
        await roost.stop()


async def refresh(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token}
    )


async def first_refresh_token(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["refresh_token"]
    return token


async def test_a_refresh_whose_answer_was_lost_is_retried_within_the_window(
    clocked: tuple[httpx.AsyncClient, MovableClock],
) -> None:
    http, clock = clocked
    clock.offset = -(REFRESH_RETRY_S - 5)
    held = await first_refresh_token(http)
    lost = await refresh(http, held)  # the server rotated, the client never saw the answer
    assert lost.status_code == 200
    clock.offset = 0  # the client comes back with the token it still holds
    retried = await refresh(http, held)
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] != lost.json()["refresh_token"]
    assert (await http.get(DEVICES, headers=bearer(retried.json()["access_token"]))).is_success
    # the family lives on
    onward = await refresh(http, retried.json()["refresh_token"])
    assert onward.status_code == 200, onward.text
    assert (await refresh(http, onward.json()["refresh_token"])).status_code == 200


async def test_the_successor_a_retry_replaced_is_dead_and_betrays_a_copy(
    clocked: tuple[httpx.AsyncClient, MovableClock],
) -> None:
    http, _ = clocked
    held = await first_refresh_token(http)
    lost = (await refresh(http, held)).json()["refresh_token"]
    retried = (await refresh(http, held)).json()["refresh_token"]
    # whoever holds the replaced successor is not the client that retried: it is a reuse
    assert_error(await refresh(http, lost), 401)
    assert_error(await refresh(http, retried), 401)  # the family is revoked


async def test_a_used_refresh_token_is_retried_once_only(
    clocked: tuple[httpx.AsyncClient, MovableClock],
) -> None:
    # the red team's F5: five retries within the window each minted a 2-hour access token
    http, _ = clocked
    held = await first_refresh_token(http)
    lost = await refresh(http, held)
    assert lost.status_code == 200
    retried = await refresh(http, held)  # the one retry of a lost answer
    assert retried.status_code == 200, retried.text
    again = await refresh(http, held)  # within the window still: a replay
    assert_error(again, 401)
    assert again.json()["error"]["message"] == "invalid refresh token"
    assert_error(await refresh(http, held), 401)
    # the family is revoked: the successor the retry handed out is dead too
    assert_error(await refresh(http, retried.json()["refresh_token"]), 401)
    assert_error(await refresh(http, lost.json()["refresh_token"]), 401)


async def test_a_retry_after_the_window_revokes_the_family(
    clocked: tuple[httpx.AsyncClient, MovableClock],
) -> None:
    http, clock = clocked
    clock.offset = -(REFRESH_RETRY_S + 1)
    held = await first_refresh_token(http)
    lost = await refresh(http, held)
    assert lost.status_code == 200
    clock.offset = 0
    response = await refresh(http, held)
    assert_error(response, 401)
    assert response.json()["error"]["message"] == "invalid refresh token"
    assert_error(await refresh(http, lost.json()["refresh_token"]), 401)  # revoked with it


async def test_a_retry_after_the_successor_was_used_revokes_the_family(
    clocked: tuple[httpx.AsyncClient, MovableClock],
) -> None:
    http, _ = clocked
    held = await first_refresh_token(http)
    delivered = (await refresh(http, held)).json()["refresh_token"]
    newest = (await refresh(http, delivered)).json()["refresh_token"]
    assert_error(await refresh(http, held), 401)  # a replay, within the window or not
    assert_error(await refresh(http, newest), 401)
