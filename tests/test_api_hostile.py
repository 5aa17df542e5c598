"""Hostile and broken HTTP input: every answer is a 4xx with the error JSON, never a 500, never a
stack trace, and the server keeps serving.

Requests are written byte for byte on a raw socket, so nothing (dot-segment removal, encoding)
stands between the test and the server. The operations come from the OpenAPI document, so every
documented route is probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from roost.api.openapi import openapi_document
from roost.app import Roost
from roost.config import Settings

from conftest import ADMIN, create_device, make_settings

MAX_BODY = 4096

VALID = {"user": ADMIN, "device": "dev1", "id": "tok1", "token": "tok1", "resource": "temperature"}

# Path parameter values, already percent-encoded as they go on the wire.
WEIRD = [
    "..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%2F..%2Froost.db",
    ".",
    "a%00b",
    "%00",
    "x" * 5000,
    "%C3%A9t%C3%A9",
    "%F0%9F%90%A6",
    "%ff%fe",
    "%0D%0AX-Injected:%201",
    "%20",
    "'%20OR%20'1'%3D'1",
    "%25",
    "*",
    "%u002e",
]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", max_body_bytes=MAX_BODY)


@pytest.fixture
async def token(http: httpx.AsyncClient, admin_token: str) -> str:
    await create_device(http, admin_token, "dev1")
    return admin_token


@pytest.fixture(autouse=True)
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may make the API log an unexpected error."""
    caplog.set_level(logging.ERROR, logger="roost.api")
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    errors = [r for r in records if r.name == "roost.api" and r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def send(server: Roost, head: bytes, body: bytes = b"", chunked: bool = False) -> Reply:
    """One request on a fresh connection (closed after the answer), exactly as given."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    try:
        if chunked:
            head += b"Transfer-Encoding: chunked\r\n"
        elif body:
            head += b"Content-Length: %d\r\n" % len(body)
        writer.write(head + b"Host: roost\r\nConnection: close\r\n\r\n")
        if chunked:
            for start in range(0, len(body), 1000):
                piece = body[start : start + 1000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return Reply(int(status_line.split()[1]), headers, payload)


def request_head(method: str, target: str, token: str | None, content_type: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n".encode()
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n".encode()
    if content_type:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head


def assert_error_json(reply: Reply, *statuses: int) -> None:
    assert 400 <= reply.status < 500, (reply.status, reply.body[:300])
    if statuses:
        assert reply.status in statuses, (reply.status, reply.body[:300])
    assert reply.headers.get("content-type") == "application/json", reply.headers
    body = reply.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message"}, body
    assert isinstance(body["error"]["message"], str)
    assert b"Traceback" not in reply.body and b'File "' not in reply.body


def operations() -> Iterator[tuple[str, str, list[str], bool]]:
    """(method, path template, path parameter names, takes a body) of every documented route."""
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            names = re.findall(r"\{(\w+)\}", path)
            yield method.upper(), path, names, "requestBody" in operation


def fill(template: str, **values: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m[1], VALID.get(m[1], "x")), template)


BODY_OPERATIONS = [(m, p) for m, p, _, has_body in operations() if has_body]


async def test_weird_ids_in_every_path_parameter(server: Roost, token: str) -> None:
    probed = 0
    for method, template, names, has_body in operations():
        for name in names:
            for value in WEIRD:
                target = fill(template, **{name: value})
                content_type = b"application/json" if has_body else b""
                body = b"{}" if has_body else b""
                head = request_head(method, target, token, content_type)
                reply = await send(server, head, body)
                assert_error_json(reply)
                probed += 1
    assert probed > 200
    # the server is still fine
    ok = await send(server, request_head("GET", f"/v1/users/{ADMIN}/devices", token))
    assert ok.status == 200 and [d["device"] for d in ok.json()] == ["dev1"]


async def test_ids_breaking_the_grammar_are_400(server: Roost, token: str) -> None:
    for target in (
        "/v1/users/../devices",
        "/v1/users/%2e%2e/devices",
        "/v1/users/a%00b/devices",
        f"/v1/users/{'u' * 33}/devices",
        f"/v1/users/{ADMIN}/devices/..",
        f"/v1/users/{ADMIN}/devices/%C3%A9/stats",
        f"/v1/users/{ADMIN}/tokens/..",
    ):
        reply = await send(server, request_head("GET", target, token))
        assert_error_json(reply, 400)
        assert "invalid" in reply.json()["error"]["message"]


async def test_bytes_the_http_parser_refuses_are_4xx_without_detail(
    server: Roost, token: str
) -> None:
    for target in (b"/v1/users/a\x00b/devices", "/v1/users/\u00e9/devices".encode(), b"/" * 70000):
        reply = await send(server, b"GET " + target + b" HTTP/1.1\r\n")
        assert 400 <= reply.status < 500
        assert b"Traceback" not in reply.body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_oversized_bodies_are_413(server: Roost, token: str, chunked: bool) -> None:
    body = b'{"name": "' + b"x" * MAX_BODY + b'"}'
    assert BODY_OPERATIONS
    for method, template in BODY_OPERATIONS:
        auth = None if template == "/oauth/token" else token
        head = request_head(method, fill(template), auth, b"application/json")
        assert_error_json(await send(server, head, body, chunked), 413)


MALFORMED = [
    b'{"device": ',
    b"{'single': 'quotes'}",
    b"\xff\xfe\x00{",
    b"NaN",
    b'{"a": Infinity}',
    b"[1, 2",
    b"[" * 1500 + b"]" * 1500,  # deeper than the parser recurses
    b'{"a": 1} trailing',
    b"",
]

WRONG_TYPES = [b"[]", b'"text"', b"42", b"null", b"true", b"[{}]"]


async def test_malformed_json_and_wrong_types_are_400(server: Roost, token: str) -> None:
    for method, template in BODY_OPERATIONS:
        auth = None if template == "/oauth/token" else token
        resource_call = template.endswith("{resource}")  # v1, v2 and v3 device calls
        for body in MALFORMED + WRONG_TYPES:
            if resource_call and not body:
                continue  # an empty body runs a resource: that is not an error
            head = request_head(method, fill(template), auth, b"application/json")
            reply = await send(server, head, body)
            if resource_call and reply.status == 404:
                continue  # the body was acceptable and the device is offline
            if template.endswith("/endpoints/{endpoint}/call") and body in [b"", *WRONG_TYPES]:
                assert_error_json(reply, 404)  # any JSON (or none) is call data; no such endpoint
                continue
            assert_error_json(reply, 400)


DEVICES, TOKENS = "/v1/users/admin/devices", "/v1/users/admin/tokens"
DEVICE_TOKENS = DEVICES + "/dev1/tokens"
LONELY = "\\ud800"  # a JSON escape of a lone surrogate, which no store can hold as text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", DEVICES, {"device": "d2", "credentials": ["secret1"]}),
        ("POST", DEVICES, {"device": {"id": 1}, "credentials": "secret1"}),
        ("POST", DEVICES, f'{{"device": "d2", "credentials": "secret1", "name": "{LONELY}"}}'),
        ("PUT", DEVICES + "/dev1", {"enabled": "false"}),
        ("PUT", DEVICES + "/dev1", f'{{"description": "{LONELY}"}}'),
        ("POST", DEVICE_TOKENS, '{"token_name": "t", "token_expiration": 1e400}'),
        ("POST", DEVICE_TOKENS, {"token_name": "t", "token_expiration": 10**30}),
        ("POST", DEVICE_TOKENS, {"token_name": "t", "token_resources": "temperature"}),
        ("POST", TOKENS, f'{{"token": "t", "name": "{LONELY}"}}'),
        ("POST", TOKENS, {"allow": {"Device": {"*": {"ReadDeviceStatus": 1}}}}),
        ("POST", TOKENS, {"allow": {"Device": {"*": "ReadDeviceStatus"}}, "expire": "1e13"}),
        ("PUT", "/v1/users/admin/password", {"password": 123456, "current_password": None}),
        ("PUT", "/v1/users/admin/password", {"password": "p" * 73, "current_password": "x"}),
    ],
)
async def test_wrong_field_types_are_400(
    server: Roost, token: str, method: str, path: str, body: dict[str, Any] | str
) -> None:
    raw = (body if isinstance(body, str) else json.dumps(body)).encode()
    reply = await send(server, request_head(method, path, token, b"application/json"), raw)
    assert_error_json(reply, 400)


async def test_huge_and_many_query_values_are_400(server: Roost, token: str) -> None:
    targets = [
        f"/v1/users/{ADMIN}/devices?id={'x' * 10_000}",
        f"/v1/users/{ADMIN}/devices?{'&'.join(f'p{i}=1' for i in range(100))}",
        f"/v2/users/{ADMIN}/devices/dev1/temperature?timeout={'9' * 5000}",
        f"/v1/users/{ADMIN}/devices/dev1/stats?x={'%F0%9F%90%A6' * 2000}",
    ]
    for target in targets:
        assert_error_json(await send(server, request_head("GET", target, token)), 400)


async def test_non_ascii_digits_in_timeout_are_400(server: Roost, token: str) -> None:
    for digits in ("%C2%B2", "%D9%A3", "%EF%BC%93"):  # superscript 2, Arabic-Indic 3, fullwidth 3
        target = f"/v2/users/{ADMIN}/devices/dev1/temperature?timeout={digits}"
        assert_error_json(await send(server, request_head("GET", target, token)), 400)


async def test_bad_tokens_and_headers_are_401(server: Roost, token: str) -> None:
    target = f"/v1/users/{ADMIN}/devices"
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for header in (
        b"Authorization: Bearer\r\n",
        b"Authorization: Bearer " + b"x" * 20_000 + b"\r\n",
        b"Authorization: Basic YWRtaW46YWRtaW4=\r\n",
        b"Authorization: Bearer " + forged.encode() + b"\r\n",
        b"Authorization: Bearer a.b.c\r\n",
        b"Authorization: Bearer \xff\xfe\r\n",
    ):
        reply = await send(server, f"GET {target} HTTP/1.1\r\n".encode() + header)
        assert_error_json(reply, 401)
        assert reply.headers.get("www-authenticate") == "Bearer"
    reply = await send(server, request_head("GET", f"{target}?authorization={'y' * 5000}", None))
    assert_error_json(reply, 401)


async def test_form_login_with_garbage_is_4xx(server: Roost) -> None:
    for content_type, body in (
        (b"application/x-www-form-urlencoded", b"grant_type=password&username=%ff&password=%00"),
        (b"application/x-www-form-urlencoded", b"grant_type=password&" + b"a=b&" * 500),
        (b"application/x-www-form-urlencoded", b"%%%%"),
        (b"text/plain", b"\x00\x01\x02"),
        (b"application/json", b'{"grant_type": "password", "username": ["admin"]}'),
        (b"application/json", b'{"grant_type": "refresh_token", "refresh_token": 1}'),
    ):
        reply = await send(server, request_head("POST", "/oauth/token", None, content_type), body)
        assert_error_json(reply, 400, 401)


async def test_endless_request_heads_are_cut_at_64_kib(server: Roost, token: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    writer.write(b"GET /v1/server/healthcheck HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    answer = b""
    with contextlib.suppress(ConnectionError):
        while sent < 4 << 20 and not reader.at_eof():  # a header that never ends
            writer.write(b"a" * 16384)
            await writer.drain()
            sent += 16384
            await asyncio.sleep(0)
        answer = await asyncio.wait_for(reader.read(), 5)
    # answered 431, or reset while the client was still sending: either way cut early
    assert answer.startswith(b"HTTP/1.1 431") or not answer
    assert sent < 1 << 20  # long before the 4 MiB the client was ready to send
    ok = await send(server, request_head("GET", "/v1/server/healthcheck", None), b"")
    assert ok.status == 200
