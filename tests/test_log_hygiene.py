"""What an unauthenticated client can make the server log: neither a traceback for a body it cut
off (a disconnect is not an error), nor a token under any spelling of ``authorization`` in the
query string or a header, over HTTP and WebSocket, at DEBUG."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roost.app import Roost
from roost.redact import redact

from conftest import ADMIN, ADMIN_PASSWORD, create_device, login, make_settings, wait_for

DEVICES = f"/v1/users/{ADMIN}/devices"
# the clients' own loggers write what they send, the token included: not the server's logs
CLIENT_LOGGERS = ("websockets.client", "httpx", "httpcore")


def server_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every record the server wrote, as a handler would print it (message and traceback)."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [
        formatter.format(record)
        for record in caplog.records
        if not record.name.startswith(CLIENT_LOGGERS)
    ]


# -- F3: a body cut off by its client ---------------------------------------------------------


async def cut_off(port: int, target: str, headers: str = "") -> None:
    """A request whose body is 1 byte of the 100 it announced, then the connection closed."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 100\r\n\r\ng".encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    "route",
    [
        "/oauth/token",  # unauthenticated, through Starlette
        DEVICES,  # authenticated, through Starlette
        f"/v2/users/{ADMIN}/devices/dev1/led",  # authenticated, the direct path of resource calls
        f"/v3/users/{ADMIN}/devices/dev1/resources/led",
    ],
)
async def test_a_body_cut_off_by_its_client_is_no_error(
    server: Roost, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, route: str
) -> None:
    headers = "" if route == "/oauth/token" else f"Authorization: Bearer {await login(http)}\r\n"
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    connections = 20
    await asyncio.gather(*(cut_off(server.http_port, route, headers) for _ in range(connections)))

    async def all_seen() -> bool:  # each one ended, quietly or not
        seen = [r for r in caplog.records if r.name == "roost.api" and route in r.getMessage()]
        return len(seen) >= connections

    await wait_for(all_seen)
    await asyncio.sleep(0.1)  # uvicorn logs after the app returns
    lines = server_lines(caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], lines
    assert not [line for line in lines if "Traceback" in line]
    # the server goes on answering, on the same routes
    assert await login(http, ADMIN, ADMIN_PASSWORD)


async def test_slow_bodies_evicted_to_make_room_end_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    roost = Roost(make_settings(tmp_path / "data", http_max_pending=4))
    await roost.start()
    try:
        slow = []
        for _ in range(12):  # each a pending connection, the oldest evicted for the newest
            _, writer = await asyncio.open_connection("127.0.0.1", roost.http_port)
            writer.write(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\ng")
            await writer.drain()
            slow.append(writer)

        async def evicted() -> bool:
            gone = [r for r in caplog.records if r.name == "roost.api"]  # quietly or not
            return len(gone) >= 8

        await wait_for(evicted)
        await asyncio.sleep(0.1)
        lines = server_lines(caplog)  # a WARNING that the pending connections are full, at most
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], lines
        assert not [line for line in lines if "Traceback" in line]
        for writer in slow:
            writer.close()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
            assert await login(http)
    finally:
        await roost.stop()


# -- F6: a token in the query string, under any spelling --------------------------------------

SPELLINGS = [
    "authorization%3D{t}",  # the '=' encoded: the whole parameter is its "name"
    "authorization%253D{t}",  # the same, encoded twice
    "%61uthorization={t}",
    "authoriz%2561tion={t}",
    "AUTHORIZATION={t}",
    "Authorization+%3D+{t}",
    "interval=5&authorization%3D{t}&x=1",
    "next=%2Fx%3Fauthorization%3D{t}",  # a value that carries it
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_redact_hides_the_token_under_any_spelling(spelling: str) -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    query = spelling.format(t=secret)
    for line in (
        f'127.0.0.1:5000 - "WebSocket /v3/users/admin/devices/dev1/resources?{query}" 403',
        f"< GET /nope?{query} HTTP/1.1",
        f'127.0.0.1:5000 - "GET /v1/users/admin/devices?{query} HTTP/1.1" 401',
        query,
    ):
        redacted = redact(line)
        assert secret not in redacted and "c2lnbmF0dXJl" not in redacted, redacted
        assert "***" in redacted


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1:5000 - "WebSocket /v3/users/admin/devices/dev1/resources?interval=5" [accepted]',
        "< GET /v3/users/admin/devices/dev1/resources/temp?interval=5&x=%20a HTTP/1.1",
        "< Host: 127.0.0.1:8000",
        "unexpected error on POST /oauth/token",
        "100% of 5 = done",
    ],
)
def test_redact_leaves_other_lines_alone(line: str) -> None:
    assert redact(line) == line


def test_redact_hides_an_authorization_header() -> None:
    secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"
    for line in (f"< Authorization: Bearer {secret}", f"< authorization: {secret}"):
        redacted = redact(line)
        assert secret not in redacted and "c2lnbmF0dXJl" not in redacted
        assert redacted.lower().startswith("< authorization: ")


async def test_no_spelling_of_a_token_reaches_the_server_logs(
    server: Roost, http: httpx.AsyncClient, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    await create_device(http, admin_token)
    caplog.set_level(logging.DEBUG)
    secret = admin_token.split(".")[2]
    base = f"127.0.0.1:{server.http_port}"
    stream = f"/v3/users/{ADMIN}/devices/dev1/resources"
    for spelling in SPELLINGS:
        query = spelling.format(t=admin_token)
        for path in (stream, "/nope"):
            await http.get(f"{path}?{query}")
            with pytest.raises(InvalidStatus):
                await connect(f"ws://{base}{path}?{query}")
    # the token the server does take: in the plain query parameter, and in the header
    async with connect(f"ws://{base}{stream}?authorization={admin_token}&interval=5"):
        pass
    with pytest.raises(InvalidStatus):  # not "Bearer <token>": refused, and logged at DEBUG
        await connect(f"ws://{base}{stream}", additional_headers={"Authorization": admin_token})
    async with connect(
        f"ws://{base}{stream}?interval=5",
        additional_headers={"Authorization": f"Bearer {admin_token}"},
    ):
        pass

    lines = server_lines(caplog)
    assert not [line for line in lines if secret in line]
    assert any(f'"WebSocket {stream}?interval=5" [accepted]' in line for line in lines), lines
    assert any("authorization=***&interval=5" in line for line in lines)
    assert any("%61uthorization=***" in line for line in lines)
