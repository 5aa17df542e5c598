"""The direct path of resource calls (roost.net.http, RestApi.direct) answers byte for byte as the
ASGI route does, and keeps HTTP/1.1's rules: keep-alive, pipelining, HEAD, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from roost.api import resources
from roost.api.app import RestApi
from roost.app import Roost
from roost.device import Device
from roost.net.http import Answer, BoundedHttpProtocol, Direct
from roost.services import Services

from conftest import ADMIN, bearer, create_device, login, make_settings, sdk_device

DATE = re.compile(rb"\r\ndate: [^\r]+\r\n")


class Side:
    """One server with a device and every kind of token, reached over raw sockets."""

    def __init__(self, roost: Roost, device: Device, tokens: dict[str, str]) -> None:
        self.roost = roost
        self.device = device
        self.tokens = tokens
        self.taken: list[str] = []  # the requests the direct path took

    async def exchange(self, raw: bytes, answers: int = 1) -> bytes:
        """Send ``raw`` on a new connection; the answers read, date headers made equal."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.roost.http_port)
        try:
            writer.write(raw.replace(b"{session}", self.tokens["session"].encode()))
            out = b"".join([await read_response(reader, raw) for _ in range(answers)])
        finally:
            writer.close()
        return DATE.sub(b"\r\ndate: -\r\n", out)


async def read_response(reader: asyncio.StreamReader, request: bytes) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    match = re.search(rb"content-length: (\d+)", head)
    length = int(match.group(1)) if match else 0
    if request.startswith(b"HEAD "):
        length = 0
    return head + (await reader.readexactly(length) if length else b"")


def attach(device: Device) -> Device:
    device.output("temperature", lambda: 23.5)
    device.output("sensors/humidity", lambda: 61)
    device.input("relay", lambda value: None, getter=lambda: False)
    device.input_output("echo", lambda value: value, sample=None)
    device.run("reset", lambda: None)
    device.output("slow", _slow)
    return device


async def _slow() -> int:
    await asyncio.sleep(2)
    return 1


async def start_side(data_dir: Path) -> Side:
    roost = Roost(make_settings(data_dir))
    await roost.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http:
        session = await login(http)
        await create_device(http, session)
        await create_device(http, session, device="offline")
        user_token = await http.post(
            f"/v1/users/{ADMIN}/tokens",
            json={"token": "reader", "allow": {"Device": {"dev1": ["AccessDeviceResources"]}}},
            headers=bearer(session),
        )
        device_token = await http.post(
            f"/v1/users/{ADMIN}/devices/dev1/tokens",
            json={"token_name": "t", "token_resources": ["temperature"]},
            headers=bearer(session),
        )
    device = attach(sdk_device(roost))
    await device.start()
    await device.wait_connected(5)
    tokens = {
        "session": session,
        "user": user_token.json()["access_token"],
        "device": device_token.json()["token"],
    }
    return Side(roost, device, tokens)


@pytest.fixture
async def sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Side, Side]]:
    """The same server twice: with the direct path, then (patched out) with ASGI only."""
    taken: list[str] = []
    real = RestApi.direct

    def spied(self: RestApi, scope: Any, receive: Any) -> Any:
        answer = real(self, scope, receive)
        if answer is not None:
            taken.append(f"{scope['method']} {scope['path']}")
        return answer

    monkeypatch.setattr(RestApi, "direct", spied)
    direct = await start_side(tmp_path / "direct")
    direct.taken = taken
    monkeypatch.setattr(RestApi, "direct", lambda self, scope, receive: None)
    asgi = await start_side(tmp_path / "asgi")
    try:
        yield direct, asgi
    finally:
        for side in (direct, asgi):
            await side.device.stop()
            await side.roost.stop()


V2 = f"/v2/users/{ADMIN}/devices".encode()
V3 = f"/v3/users/{ADMIN}/devices".encode()
AUTH = b"Authorization: Bearer {session}\r\n"


def get(path: bytes, extra: bytes = AUTH, method: bytes = b"GET") -> bytes:
    return method + b" " + path + b" HTTP/1.1\r\nHost: roost\r\n" + extra + b"\r\n"


def post(path: bytes, body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"POST "
        + path
        + b" HTTP/1.1\r\nHost: roost\r\n"
        + AUTH
        + b"Content-Type: "
        + content_type
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


CASES: dict[str, bytes] = {
    "output": get(V2 + b"/dev1/temperature"),
    "nested": get(V2 + b"/dev1/sensors/humidity"),
    "escaped": get(V2 + b"/dev1/sensors%2Fhumidity"),
    "run": get(V2 + b"/dev1/reset"),
    "listing": get(V2 + b"/dev1/api"),
    "one resource's api": get(V2 + b"/dev1/relay/api"),
    "no such resource": get(V2 + b"/dev1/nothing"),
    "offline device": get(V2 + b"/offline/temperature"),
    "unknown device": get(V2 + b"/ghost/temperature"),
    "bad device id": get(V2 + b"/bad..id/temperature"),
    "empty segment": get(V2 + b"/dev1/sensors//humidity"),
    "other user": get(b"/v2/users/someone/devices/dev1/temperature"),
    "no token": get(V2 + b"/dev1/temperature", b""),
    "bad token": get(V2 + b"/dev1/temperature", b"Authorization: Bearer nonsense\r\n"),
    "basic auth": get(V2 + b"/dev1/temperature", b"Authorization: Basic eDp5\r\n"),
    "query token": get(V2 + b"/dev1/temperature?authorization={session}", b""),
    "timeout": get(V2 + b"/dev1/temperature?timeout=2000"),
    "bad timeout": get(V2 + b"/dev1/temperature?timeout=soon"),
    "expired call": get(V2 + b"/dev1/slow?timeout=50"),
    "head": get(V2 + b"/dev1/temperature", method=b"HEAD"),
    "wrong method": get(V2 + b"/dev1/temperature", method=b"PUT"),
    "input": post(V2 + b"/dev1/relay", b'{"in": true}'),
    "input output": post(V2 + b"/dev1/echo", b'{"in": {"a": [1, 2.5, "x"]}}'),
    "empty post": post(V2 + b"/dev1/reset", b""),
    "bad json": post(V2 + b"/dev1/echo", b'{"in": '),
    "not wrapped": post(V2 + b"/dev1/echo", b'{"value": 1}'),
    "too large": post(V2 + b"/dev1/echo", b'{"in": "%s"}' % (b"x" * 2_000_000)),
    "v3 listing": get(V3 + b"/dev1/resources"),
    "v3 call": get(V3 + b"/dev1/resources/temperature"),
    "v3 post": post(V3 + b"/dev1/resources/echo", b"[1, 2]"),
    "v3 octets": post(V3 + b"/dev1/resources/echo", b"\x00\x01", b"application/octet-stream"),
    "v3 missing": get(V3 + b"/ghost/resources/temperature"),
    "http/1.0": get(V2 + b"/dev1/temperature").replace(b"HTTP/1.1", b"HTTP/1.0"),
    "close": get(V2 + b"/dev1/temperature", AUTH + b"Connection: close\r\n"),
}


async def test_direct_answers_equal_the_asgi_route(sides: tuple[Side, Side]) -> None:
    direct = sides[0]
    for name, raw in CASES.items():
        direct.taken.clear()
        answers = [await side.exchange(raw) for side in sides]
        assert answers[0] == answers[1], name
        assert answers[0].startswith(b"HTTP/1.1 "), name
        assert len(direct.taken) == (name != "wrong method"), name  # 405: Starlette's answer
    tokens = {"user": b"/dev1/temperature", "device": b"/dev1/temperature"}
    for kind, path in tokens.items():
        for resource in (path, b"/dev1/reset"):  # the device token allows temperature only
            answers = []
            for side in sides:
                auth = b"Authorization: Bearer %s\r\n" % side.tokens[kind].encode()
                answers.append(await side.exchange(get(V2 + resource, auth)))
            assert answers[0] == answers[1], (kind, resource)


async def test_status_codes_of_the_direct_path(sides: tuple[Side, Side]) -> None:
    direct, _ = sides
    expected = {
        "output": b"200",
        "no such resource": b"404",
        "unknown device": b"404",
        "no token": b"401",
        "other user": b"404",  # the admin may look in every tree: there is no such device
        "bad timeout": b"400",
        "expired call": b"504",
        "wrong method": b"405",
        "too large": b"413",
    }
    for name, status in expected.items():
        answer = await direct.exchange(CASES[name])
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), (name, answer)
    limited = b"Authorization: Bearer %s\r\n" % direct.tokens["device"].encode()
    forbidden = await direct.exchange(get(V2 + b"/dev1/reset", limited))
    assert forbidden.startswith(b"HTTP/1.1 403 "), forbidden
    output = await direct.exchange(CASES["output"])
    assert output.endswith(b'\r\n\r\n{"out":23.5}')
    head = await direct.exchange(CASES["head"])
    assert b"content-length: 12\r\n" in head and head.endswith(b"\r\n\r\n")


async def test_pipelined_calls_are_answered_in_order(sides: tuple[Side, Side]) -> None:
    raw = (
        get(V2 + b"/dev1/slow")  # answered last by the device, first on the connection
        + get(V2 + b"/dev1/temperature")
        + get(b"/v1/server/healthcheck", b"")
        + get(V2 + b"/dev1/sensors/humidity")
    )
    answers = [await side.exchange(raw, answers=4) for side in sides]
    assert answers[0] == answers[1]
    bodies = re.findall(rb"\r\n\r\n([^\r]*?)(?=HTTP/1.1|$)", answers[0])
    assert bodies == [b'{"out":1}', b'{"out":23.5}', b'{"status":"ok"}', b'{"out":61}']


async def test_keep_alive_and_close(sides: tuple[Side, Side]) -> None:
    direct, _ = sides
    reader, writer = await asyncio.open_connection("127.0.0.1", direct.roost.http_port)
    auth = AUTH.replace(b"{session}", direct.tokens["session"].encode())
    try:
        for _ in range(3):  # one connection, many calls
            writer.write(get(V2 + b"/dev1/temperature", auth))
            answer = await read_response(reader, b"GET")
            assert answer.endswith(b'{"out":23.5}') and b"connection: close" not in answer
        writer.write(get(V2 + b"/dev1/temperature", auth + b"Connection: close\r\n"))
        answer = await read_response(reader, b"GET")
        assert b"\r\nconnection: close\r\n" in answer
        assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server closed
    finally:
        writer.close()


async def test_a_caller_that_leaves_mid_call_costs_nothing(
    sides: tuple[Side, Side], caplog: pytest.LogCaptureFixture
) -> None:
    direct, _ = sides
    _, writer = await asyncio.open_connection("127.0.0.1", direct.roost.http_port)
    auth = AUTH.replace(b"{session}", direct.tokens["session"].encode())
    writer.write(get(V2 + b"/dev1/slow", auth))
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()  # gone before the device answers (2 s)
    await asyncio.sleep(2.3)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    answer = await direct.exchange(CASES["output"])
    assert answer.endswith(b'{"out":23.5}')


async def test_shutdown_answers_the_call_in_flight(tmp_path: Path) -> None:
    side = await start_side(tmp_path / "data")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", side.roost.http_port)
        auth = AUTH.replace(b"{session}", side.tokens["session"].encode())
        writer.write(get(V2 + b"/dev1/slow", auth))
        await writer.drain()
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(side.roost.stop())
        answer = await read_response(reader, b"GET")
        # the server drains: the call accepted before the stop is let finish (the device is
        # still there), answered, not dropped, and the connection closes after it
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" in answer
        assert await asyncio.wait_for(reader.read(), 10) == b""
        await stopping
        writer.close()
    finally:
        await side.device.stop()


PATHS = st.lists(
    st.sampled_from(["v2", "v3", "users", "devices", "resources", "admin", "d1", "a", "", "%2F"])
    | st.text(alphabet="abc/._-%~", max_size=6),
    max_size=9,
).map(lambda parts: "/" + "/".join(parts))


API = RestApi(cast(Services, None))  # matching needs no services


@given(path=PATHS, method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]))
def test_direct_matches_as_the_router_does(path: str, method: str) -> None:
    """Whatever the path, the direct path takes a request exactly when one of the router's hot
    routes fully matches it, with the same path parameters."""
    scope: dict[str, Any] = {"type": "http", "path": path, "method": method, "root_path": ""}
    expected = None
    for route in resources.routes:
        match, child = route.matches(dict(scope))
        if match is not Match.NONE:
            expected = child["path_params"] if match is Match.FULL else None
            break
    answer = API.direct(scope, receive=None)  # type: ignore[arg-type]
    if answer is None:
        assert expected is None
    else:
        answer.close()  # not awaited: only the match is under test
        assert scope["path_params"] == expected


async def test_expect_continue_comes_before_the_answer(sides: tuple[Side, Side]) -> None:
    """A POST with "Expect: 100-continue" whose body came along: "100 Continue" goes out when the
    endpoint reads the body, before its answer (here a 400), on both paths."""
    body = b'{"in": '
    raw = (
        b"POST " + V2 + b"/dev1/echo HTTP/1.1\r\nHost: roost\r\n" + AUTH
        + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        + get(V2 + b"/dev1/temperature")
    )  # fmt: skip
    answers = [await side.exchange(raw, answers=3) for side in sides]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 ")
    assert answers[0].endswith(b'{"out":23.5}')


async def app_answer(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-length", b"12")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"from the app"})


@contextlib.asynccontextmanager
async def bare_server(direct: Direct, grace: float = 5) -> AsyncIterator[int]:
    """uvicorn with our protocol and ``direct`` in front of :func:`app_answer`; yields its port."""
    config = uvicorn.Config(
        app_answer,
        http=cast(type[asyncio.Protocol], partial(BoundedHttpProtocol, direct=direct)),
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=grace,
    )
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def assert_internal_error(reader: asyncio.StreamReader) -> None:
    failed = await read_response(reader, b"GET")
    assert failed.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"\r\nconnection: close\r\n" in failed
    assert failed.endswith(b"\r\n\r\nInternal Server Error")
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_a_failing_answer_is_uvicorns_500_and_the_rest_goes_to_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fail() -> Answer:
        raise RuntimeError("bug")

    def direct(scope: Scope, receive: Receive) -> Coroutine[Any, Any, Answer] | None:
        return fail() if scope["path"] == "/boom" else None

    async with bare_server(direct) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(b"/other", b"") + get(b"/boom", b""))
        assert (await read_response(reader, b"GET")).endswith(b"\r\n\r\nfrom the app")
        await assert_internal_error(reader)
        writer.close()
    assert any("unexpected error answering /boom" in r.getMessage() for r in caplog.records)


async def test_a_hook_that_raises_leaves_the_request_to_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def ok() -> Answer:
        return 200, [(b"content-length", b"6")], b"direct"

    def direct(scope: Scope, receive: Receive) -> Coroutine[Any, Any, Answer] | None:
        if scope["path"] == "/boom":
            raise RuntimeError("bug")
        return ok()

    async with bare_server(direct) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(b"/ok", b"") + get(b"/boom", b"") + get(b"/ok", b""))
        assert (await read_response(reader, b"GET")).endswith(b"\r\n\r\ndirect")
        assert (await read_response(reader, b"GET")).endswith(b"\r\n\r\nfrom the app")
        assert (await read_response(reader, b"GET")).endswith(b"\r\n\r\ndirect")
        writer.close()
    assert any("direct path failed on /boom" in r.getMessage() for r in caplog.records)


async def test_a_call_cut_short_by_shutdown_is_answered_500() -> None:
    async def forever() -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def direct(scope: Scope, receive: Receive) -> Coroutine[Any, Any, Answer] | None:
        return forever()

    async with bare_server(direct, grace=0.2) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get(b"/slow", b""))
        await writer.drain()
        await asyncio.sleep(0.1)
    # the server waited 0.2 s for the call, then cancelled it: the caller hears why
    await assert_internal_error(reader)
    writer.close()
