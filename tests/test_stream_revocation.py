"""Open streams end when the access they were opened with ends, over SSE and WebSocket alike.

Each revocation is made as a user makes it (the REST API, the CLI in another process, a store
written by another process) against a real Roost, with real tokens and a real SDK device. A
WebSocket ends with close code 1008 and the reason; an SSE stream with a last ``event: error``.

Unless a test says otherwise, the server re-checks open streams only every 600 s: what ends a
stream within the bounded wait is the announcement on the bus, or the token's expiry timer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roost.app import Roost
from roost.auth.passwords import hash_password
from roost.auth.tokens import ACCESS_TTL_S
from roost.bus.base import Revocation, Revoked
from roost.config import Settings
from roost.device import Device
from roost.store.base import User
from roost.store.sqlite import DATABASE_FILE

from conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    DeviceFactory,
    bearer,
    create_device,
    login,
    make_settings,
    sdk_device,
    wait_for,
)

ANNOUNCED_WITHIN = 3.0  # seconds: "within a second", with room for a loaded machine
RECHECKED_WITHIN = 10.0  # a change written by another process, seen by the periodic re-check
STREAMS = ["sse", "websocket"]

Ended = Callable[[float], Awaitable[str]]


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    recheck = getattr(request, "param", 600.0)
    return make_settings(tmp_path / "data", stream_recheck_interval=recheck)


@pytest.fixture
async def device(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> Device:
    await create_device(http, admin_token)
    return await connect_device(_with_sensor(sdk_device(server)))


def _with_sensor(device: Device) -> Device:
    device.output("temperature", lambda: 21.5)
    return device


def now_ms() -> int:
    return int(time.time() * 1000)


async def access_token(
    http: httpx.AsyncClient, session: str, token_id: str = "t1", **fields: Any
) -> str:
    body = {"token": token_id, "allow": {"Device": {"*": ["*"]}}, **fields}
    response = await http.post(f"/v1/users/{ADMIN}/tokens", json=body, headers=bearer(session))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def device_token(http: httpx.AsyncClient, session: str, **fields: Any) -> tuple[str, str]:
    """A device token on dev1: (its id, its JWT)."""
    response = await http.post(
        f"/v1/users/{ADMIN}/devices/dev1/tokens",
        json={"token_name": "stream", **fields},
        headers=bearer(session),
    )
    assert response.status_code == 200, response.text
    return response.json()["id"], response.json()["token"]


@asynccontextmanager
async def sse_stream(server: Roost, token: str, user: str) -> AsyncIterator[Ended]:
    url = f"http://127.0.0.1:{server.http_port}/v1/users/{user}/devices/dev1/stats"
    async with (
        httpx.AsyncClient(timeout=30) as client,
        aconnect_sse(client, "GET", url, headers=bearer(token)) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        events = source.aiter_sse()
        first = await asyncio.wait_for(anext(events), 5)
        assert "connected" in json.loads(first.data)  # the stream runs

        async def ended(within: float) -> str:
            async def last_event() -> str:
                async for event in events:
                    if event.event == "error":
                        message: str = json.loads(event.data)["error"]["message"]
                        rest = [e async for e in events]  # the response must end here
                        assert rest == [], rest
                        return message
                raise AssertionError("the stream ended without an error event")

            return await asyncio.wait_for(last_event(), within)

        yield ended


@asynccontextmanager
async def websocket_stream(server: Roost, token: str, user: str) -> AsyncIterator[Ended]:
    url = (
        f"ws://127.0.0.1:{server.http_port}/v3/users/{user}/devices/dev1/resources"
        f"?authorization={token}"
    )
    async with connect(url) as ws:
        await ws.send(json.dumps({"resource": "temperature", "interval": 0.2}))
        await ws.send("{")  # answered with an error frame: the socket is served
        while "error" not in json.loads(await asyncio.wait_for(ws.recv(), 5)):
            pass

        async def ended(within: float) -> str:
            async def close_reason() -> str:
                while True:
                    try:
                        await ws.recv()
                    except ConnectionClosed as exc:
                        assert exc.rcvd is not None, "the server did not close the socket"
                        assert exc.rcvd.code == 1008, exc.rcvd
                        return exc.rcvd.reason

            return await asyncio.wait_for(close_reason(), within)

        yield ended


def open_stream(
    kind: str, server: Roost, token: str, user: str = ADMIN
) -> AbstractAsyncContextManager[Ended]:
    return (sse_stream if kind == "sse" else websocket_stream)(server, token, user)


async def refusal(kind: str, server: Roost, token: str) -> int:
    """The HTTP status a new stream on dev1 is refused with."""
    if kind == "sse":
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
            response = await client.get(
                f"/v1/users/{ADMIN}/devices/dev1/stats",
                headers={**bearer(token), "Accept": "text/event-stream"},
            )
            return response.status_code
    url = f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{url}?authorization={token}")
    return refused.value.response.status_code


# user access tokens


@pytest.mark.parametrize("kind", STREAMS)
async def test_deleted_access_token_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token)
    async with open_stream(kind, server, token) as ended:
        deleted = await http.delete(f"/v1/users/{ADMIN}/tokens/t1", headers=bearer(admin_token))
        assert deleted.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "token revoked"


@pytest.mark.parametrize("kind", STREAMS)
async def test_disabled_access_token_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token)
    async with open_stream(kind, server, token) as ended:
        disabled = await http.put(
            f"/v1/users/{ADMIN}/tokens/t1", json={"enabled": False}, headers=bearer(admin_token)
        )
        assert disabled.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "token disabled"


@pytest.mark.parametrize("kind", STREAMS)
async def test_access_token_that_no_longer_permits_the_stream_ends_it(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token)
    async with open_stream(kind, server, token) as ended:
        changed = await http.put(
            f"/v1/users/{ADMIN}/tokens/t1",
            json={"deny": {"Device": {"dev1": ["*"]}}},
            headers=bearer(admin_token),
        )
        assert changed.status_code == 200, changed.text
        assert "does not grant" in await ended(ANNOUNCED_WITHIN)


async def test_access_token_changed_but_still_permitting_keeps_its_socket(
    server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token)
    url = (
        f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
        f"?authorization={token}"
    )
    async with connect(url) as ws:
        renamed = await http.put(
            f"/v1/users/{ADMIN}/tokens/t1", json={"name": "renamed"}, headers=bearer(admin_token)
        )
        assert renamed.status_code == 200
        await ws.send(json.dumps({"resource": "temperature", "interval": 0.2}))
        for _ in range(3):  # data keeps coming after the change was announced and checked
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert frame == {"resource": "temperature", "out": 21.5}


@pytest.mark.parametrize("kind", STREAMS)
async def test_expired_access_token_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token, expire=now_ms() + 4000)
    async with open_stream(kind, server, token) as ended:
        assert await ended(4 + ANNOUNCED_WITHIN) == "token expired"


# device tokens (they grant AccessDeviceResources only: the resource socket, not the stats)


async def test_deleted_device_token_ends_its_socket(
    server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token_id, token = await device_token(http, admin_token)
    assert await refusal("sse", server, token) == 403  # it grants no stats: no SSE to end
    async with open_stream("websocket", server, token) as ended:
        deleted = await http.delete(
            f"/v1/users/{ADMIN}/devices/dev1/tokens/{token_id}", headers=bearer(admin_token)
        )
        assert deleted.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "token revoked"


async def test_expired_device_token_ends_its_socket(
    server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    _, token = await device_token(http, admin_token, token_expiration=now_ms() + 4000)
    async with open_stream("websocket", server, token) as ended:
        assert await ended(4 + ANNOUNCED_WITHIN) == "token expired"


# login sessions


@pytest.mark.parametrize("kind", STREAMS)
async def test_password_change_ends_the_streams_of_login_sessions(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    token = await access_token(http, admin_token)
    async with (
        open_stream(kind, server, admin_token) as session_ended,
        open_stream(kind, server, token) as token_ended,
    ):
        changed = await http.put(
            f"/v1/users/{ADMIN}/password",
            json={"password": "a-new-password", "current_password": ADMIN_PASSWORD},
            headers=bearer(admin_token),
        )
        assert changed.status_code == 200, changed.text
        assert await session_ended(ANNOUNCED_WITHIN) == "password changed"
        with pytest.raises(TimeoutError):  # an access token does not hang on the password
            await token_ended(0.5)


@pytest.mark.parametrize("kind", STREAMS)
async def test_logout_everywhere_ends_the_streams_of_login_sessions(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    async with open_stream(kind, server, admin_token) as ended:
        logout = await http.delete(f"/v1/users/{ADMIN}/refresh_tokens", headers=bearer(admin_token))
        assert logout.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "logged out everywhere"


@pytest.mark.parametrize("kind", STREAMS)
async def test_expired_login_session_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    assert server.services is not None
    # a session token as POST /oauth/token makes them, issued long enough ago to expire in 4 s
    issued = int(time.time()) - ACCESS_TTL_S + 4
    token = server.services.signer.access_token(ADMIN, issued)
    async with open_stream(kind, server, token) as ended:
        assert await ended(4 + ANNOUNCED_WITHIN) == "token expired"


@pytest.mark.parametrize("settings", [0.5], indirect=True)
@pytest.mark.parametrize("kind", STREAMS)
async def test_password_changed_by_the_cli_in_another_process_ends_session_streams(
    kind: str,
    server: Roost,
    settings: Settings,
    http: httpx.AsyncClient,
    admin_token: str,
    device: Device,
) -> None:
    async with open_stream(kind, server, admin_token) as ended:
        command = [sys.executable, "-m", "roost.cli", "user", "passwd", ADMIN]
        options = ["--password", "a-new-password", "--data-dir", str(settings.data_dir)]
        passwd = await asyncio.to_thread(
            subprocess.run, [*command, *options], capture_output=True, text=True, timeout=60
        )
        assert passwd.returncode == 0, passwd.stderr
        assert await ended(RECHECKED_WITHIN) == "password changed"


@pytest.mark.parametrize("settings", [0.5], indirect=True)
@pytest.mark.parametrize("kind", STREAMS)
async def test_user_deleted_by_another_process_ends_their_streams(
    kind: str,
    server: Roost,
    settings: Settings,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
) -> None:
    # Roost has no route that deletes a user; another process writing the store can
    assert server.services is not None
    password_hash = await asyncio.to_thread(hash_password, "alice-password")
    await server.services.store.create_user(User("alice", password_hash, "user", now_ms()))
    alice = await login(http, "alice", "alice-password")
    await create_device(http, alice, user="alice")
    await connect_device(_with_sensor(sdk_device(server, user="alice")))
    async with open_stream(kind, server, alice, user="alice") as ended:
        await asyncio.to_thread(_delete_user, settings.data_dir / DATABASE_FILE, "alice")
        assert await ended(RECHECKED_WITHIN) == "user deleted"


@pytest.mark.parametrize("settings", [0.5], indirect=True)
async def test_a_user_deleted_between_the_rechecks_reads_is_still_user_deleted(
    server: Roost,
    settings: Settings,
    http: httpx.AsyncClient,
    admin_token: str,
    connect_device: DeviceFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The re-check reads the user, then the device: the other process's delete (the user and,
    cascading, their devices) may land between the two, and the device is found gone first."""
    assert server.services is not None
    store = server.services.store
    password_hash = await asyncio.to_thread(hash_password, "alice-password")
    await store.create_user(User("alice", password_hash, "user", now_ms()))
    alice = await login(http, "alice", "alice-password")
    await create_device(http, alice, user="alice")
    await connect_device(_with_sensor(sdk_device(server, user="alice")))
    async with open_stream("sse", server, alice, user="alice") as ended:
        get_device = store.get_device

        async def deleted_first(owner: str, device_id: str) -> Any:
            monkeypatch.setattr(store, "get_device", get_device)  # once
            await asyncio.to_thread(_delete_user, settings.data_dir / DATABASE_FILE, "alice")
            return await get_device(owner, device_id)

        monkeypatch.setattr(store, "get_device", deleted_first)
        assert await ended(RECHECKED_WITHIN) == "user deleted"


def _delete_user(database: Path, name: str) -> None:
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("DELETE FROM users WHERE name = ?", (name,))


@pytest.mark.parametrize("kind", STREAMS)
async def test_user_revoked_on_another_node_ends_their_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    # what a NATS bus delivers from the node where a user was disabled: the same announcement
    assert server.services is not None
    token = await access_token(http, admin_token)
    async with open_stream(kind, server, token) as ended:
        await server.services.bus.announce(Revocation(ADMIN, Revoked.USER, reason="user disabled"))
        assert await ended(ANNOUNCED_WITHIN) == "user disabled"


# devices


@pytest.mark.parametrize("kind", STREAMS)
async def test_disabled_device_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    async with open_stream(kind, server, admin_token) as ended:
        disabled = await http.put(
            f"/v1/users/{ADMIN}/devices/dev1", json={"enabled": False}, headers=bearer(admin_token)
        )
        assert disabled.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "device 'dev1' is disabled"
    assert await refusal(kind, server, admin_token) == 403  # and no new stream opens


@pytest.mark.parametrize("kind", STREAMS)
async def test_deleted_device_ends_its_streams(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_device(http, admin_token)  # never connected: a connected one cannot be deleted
    async with open_stream(kind, server, admin_token) as ended:
        deleted = await http.delete(f"/v1/users/{ADMIN}/devices/dev1", headers=bearer(admin_token))
        assert deleted.status_code == 200
        assert await ended(ANNOUNCED_WITHIN) == "device 'dev1' not found"


# what a stream leaves behind


@pytest.mark.parametrize("kind", STREAMS)
async def test_a_stream_the_client_leaves_stops_listening_for_revocations(
    kind: str, server: Roost, http: httpx.AsyncClient, admin_token: str, device: Device
) -> None:
    assert server.services is not None
    bus: Any = server.services.bus  # the local bus: its listeners are this process's
    async with open_stream(kind, server, admin_token):
        assert bus.revocations.listening(ADMIN) == 1

    async def released() -> bool:
        return bus.revocations.listening(ADMIN) == 0

    await wait_for(released)


def test_revocations_travel_as_json() -> None:
    """What a NATS bus sends between nodes: every kind comes back as it left."""
    for what in Revoked:
        revocation = Revocation(ADMIN, what, "t1" if what is not Revoked.SESSIONS else None, "why")
        assert Revocation.from_json(json.loads(json.dumps(revocation.to_json()))) == revocation
