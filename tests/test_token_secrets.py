"""Token secrets (the JWTs of access and device tokens) reach login sessions only (issue 14 item 1).

Every route that reads or mints a secret is tried with every kind of caller: the owner's login
session, an admin's session in the owner's tree, access tokens (full access and read-only), a device
token, and expired or deleted tokens of both kinds. A token gets the settings without the secret,
whatever its permissions; creation answers carry the new token's JWT to whoever may create it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from roost.app import Roost

from conftest import bearer, create_device, login

OWNER, OWNER_PASSWORD = "bob", "bob-password"
TREE = f"/v1/users/{OWNER}"
FULL_ACCESS = {"*": {"*": ["*"]}}
READ_ONLY = {"*": {"*": ["Read*", "List*"]}}


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # below the owner's tree
    body: dict[str, Any] | None
    secret: str  # the field that would carry a JWT


CALLS = {
    "read_token": Call("GET", "/tokens/victim", None, "access_token"),
    "list_tokens": Call("GET", "/tokens", None, "access_token"),  # summaries: never a JWT
    "create_token": Call("POST", "/tokens", {"allow": FULL_ACCESS}, "access_token"),
    "update_token": Call("PUT", "/tokens/victim", {"name": "renamed"}, "access_token"),
    "list_device_tokens": Call("GET", "/devices/dev1/tokens", None, "token"),
    "create_device_token": Call("POST", "/devices/dev1/tokens", {"token_name": "n"}, "token"),
}

# (status, whether the answer carries the secret) of each call, by kind of caller
SHOWN, HIDDEN, FORBIDDEN, REFUSED = (200, True), (200, False), (403, False), (401, False)
SESSION = dict.fromkeys(CALLS, SHOWN) | {"list_tokens": HIDDEN}
EXPECTED: dict[str, dict[str, tuple[int, bool]]] = {
    "owner_session": SESSION,
    "admin_session": SESSION,
    "full_access_token": {
        "read_token": HIDDEN,
        "list_tokens": HIDDEN,
        "create_token": FORBIDDEN,
        "update_token": FORBIDDEN,
        "list_device_tokens": HIDDEN,
        "create_device_token": FORBIDDEN,  # tokens are minted by login sessions only
    },
    "read_only_token": {
        "read_token": HIDDEN,
        "list_tokens": HIDDEN,
        "create_token": FORBIDDEN,
        "update_token": FORBIDDEN,
        "list_device_tokens": HIDDEN,
        "create_device_token": FORBIDDEN,
    },
    "device_token": dict.fromkeys(CALLS, FORBIDDEN),
    "expired_access_token": dict.fromkeys(CALLS, REFUSED),
    "deleted_access_token": dict.fromkeys(CALLS, REFUSED),
    "expired_device_token": dict.fromkeys(CALLS, REFUSED),
    "deleted_device_token": dict.fromkeys(CALLS, REFUSED),
}


async def add_user(server: Roost, name: str, password: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "roost.cli", "--data-dir", str(server.settings.data_dir)),
        *("user", "add", name, "--password", password),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()


async def post(http: httpx.AsyncClient, session: str, path: str, body: dict[str, Any]) -> Any:
    response = await http.post(f"{TREE}{path}", json=body, headers=bearer(session))
    assert response.status_code == 200, response.text
    return response.json()


async def access_token(
    http: httpx.AsyncClient, session: str, allow: dict[str, Any], **extra: Any
) -> str:
    token: str = (await post(http, session, "/tokens", {"allow": allow, **extra}))["access_token"]
    return token


async def device_token(http: httpx.AsyncClient, session: str, **extra: Any) -> dict[str, Any]:
    made: dict[str, Any] = await post(
        http, session, "/devices/dev1/tokens", {"token_name": "d", **extra}
    )
    return made


async def owner_tree(server: Roost, http: httpx.AsyncClient) -> str:
    """Bob, with dev1 and a full-access token ``victim``; bob's login session."""
    await add_user(server, OWNER, OWNER_PASSWORD)
    session = await login(http, OWNER, OWNER_PASSWORD)
    await create_device(http, session, "dev1", user=OWNER)
    await post(http, session, "/tokens", {"token": "victim", "allow": FULL_ACCESS})
    await device_token(http, session)  # one device token for the listings
    return session


async def caller(kind: str, http: httpx.AsyncClient, admin_token: str, session: str) -> str:
    """The bearer token of a caller of ``kind`` in bob's tree."""
    if kind == "owner_session":
        return session
    if kind == "admin_session":
        return admin_token
    if kind in ("full_access_token", "read_only_token"):
        return await access_token(http, session, FULL_ACCESS if kind[0] == "f" else READ_ONLY)
    if kind == "device_token":
        token: str = (await device_token(http, session))["token"]
        return token
    if kind.startswith("expired"):
        expire = int(time.time() * 1000) + 1200
        if kind == "expired_access_token":
            token = await access_token(http, session, FULL_ACCESS, expire=expire)
        else:
            token = (await device_token(http, session, token_expiration=expire))["token"]
        await asyncio.sleep(max(0.0, expire / 1000 - time.time()) + 0.1)
        return token
    if kind == "deleted_access_token":
        made = await post(http, session, "/tokens", {"token": "gone", "allow": FULL_ACCESS})
        gone = f"{TREE}/tokens/gone"
        assert (await http.delete(gone, headers=bearer(session))).status_code == 200
        token = made["access_token"]
        return token
    assert kind == "deleted_device_token"
    made = await device_token(http, session)
    gone = f"{TREE}/devices/dev1/tokens/{made['id']}"
    assert (await http.delete(gone, headers=bearer(session))).status_code == 200
    token = made["token"]
    return token


@pytest.mark.parametrize("kind", list(EXPECTED))
async def test_token_secrets_by_caller(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    session = await owner_tree(server, http)
    token = await caller(kind, http, admin_token, session)
    seen: dict[str, tuple[int, bool]] = {}
    for name, call in CALLS.items():
        response = await http.request(
            call.method, f"{TREE}{call.path}", json=call.body, headers=bearer(token)
        )
        body = response.json()
        items = body if isinstance(body, list) else [body]
        if response.status_code == 200:  # the settings come back, with or without the secret
            assert items and all("name" in item for item in items), (name, body)
        else:
            assert set(body) == {"error"}, (name, body)
        seen[name] = (response.status_code, any(call.secret in item for item in items))
    assert seen == EXPECTED[kind]


@pytest.mark.parametrize(
    "allow",
    [READ_ONLY, {"Token": {"*": ["ReadTokenConfig", "ListTokens"]}}],
    ids=["read_and_list_everything", "read_token_config_only"],
)
async def test_a_reading_token_cannot_take_a_full_access_tokens_jwt(
    server: Roost, http: httpx.AsyncClient, allow: dict[str, Any]
) -> None:
    """The attack: a token allowed to read token settings reads the full-access one, takes its
    JWT and uses it. It now gets the settings, and nothing that authenticates."""
    session = await owner_tree(server, http)
    victim_jwt = (await http.get(f"{TREE}/tokens/victim", headers=bearer(session))).json()[
        "access_token"
    ]
    reader = await access_token(http, session, allow)

    read = await http.get(f"{TREE}/tokens/victim", headers=bearer(reader))
    assert read.status_code == 200
    assert read.json()["token"] == "victim" and read.json()["allow"] == FULL_ACCESS
    assert "access_token" not in read.json()
    listed = await http.get(f"{TREE}/tokens", headers=bearer(reader))
    assert victim_jwt not in read.text and victim_jwt not in listed.text
    # what the reader holds still cannot do what the victim could
    assert (await http.delete(f"{TREE}/tokens/victim", headers=bearer(reader))).status_code == 403


async def test_a_listing_token_cannot_take_a_device_tokens_jwt(
    server: Roost, http: httpx.AsyncClient
) -> None:
    session = await owner_tree(server, http)
    minted = await device_token(http, session, token_resources=["temperature"])
    lister = await access_token(http, session, {"Device": {"dev1": ["ListDeviceTokens"]}})

    listed = await http.get(f"{TREE}/devices/dev1/tokens", headers=bearer(lister))
    assert listed.status_code == 200
    mine = [t for t in listed.json() if t["id"] == minted["id"]]
    assert mine == [
        {"id": minted["id"], "name": "d", "resources": ["temperature"], "expiration": None}
    ]
    assert all("token" not in t for t in listed.json())
    assert minted["token"] not in listed.text
    # the owner's session still sees the JWTs, the same ones creation gave
    own = (await http.get(f"{TREE}/devices/dev1/tokens", headers=bearer(session))).json()
    assert minted["token"] in [t["token"] for t in own]
