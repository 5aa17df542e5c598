"""Endpoint calls delivered to a real HTTP server on loopback (endpoints_allow_private on, as a
test or a home network needs): placeholders filled, retries bounded, the queue bounded, and
every result announced as ``endpoint_call_response`` over the events WebSocket."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.config import Settings

from conftest import ADMIN, bearer, login, make_settings
from endpoint_target import (
    ENDPOINTS,
    Reply,
    create_endpoint,
    events_url,
    receive,
    running_target,
    subscribe,
)

RETRIES = 2


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        endpoints_allow_private=True,
        endpoints_retries=RETRIES,
        endpoints_retry_delay=0.01,
        endpoints_timeout=5.0,
        endpoints_workers=1,
        endpoints_queue=1,
        endpoints_response_bytes=64,
    )


async def test_a_call_fills_the_placeholders_and_answers_with_the_target(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    answer = Reply(201, b'{"stored": 1}')
    async with running_target(answer) as target, connect(events_url(server, admin_token)) as ws:
        config = {
            "method": "PUT",
            "url": target.url + "/rooms/{{room}}?t={{t}}&missing={{nothing}}",
            "headers": [
                {"key": "X-Room", "value": "room {{room}}"},
                {"key": "Content-Type", "value": "application/json"},
            ],
            "body": '{"temp": {{t}}, "note": "said: {{note}}", "all": {{}}}',
            "body_type": "custom",
        }
        await create_endpoint(http, admin_token, "hook", config)
        await subscribe(ws, {"event": "endpoint_call_response", "endpoint": "hook"})
        data = {"room": "a b/c?d", "t": 21.5, "note": 'he said "hi" \\ left'}
        called = await http.post(f"{ENDPOINTS}/hook/call", json=data, headers=bearer(admin_token))
        assert (called.status_code, called.json()) == (200, {"stored": 1})
        got = target.received.get_nowait()
        assert got.method == "PUT"
        assert got.target == "/rooms/a%20b%2Fc%3Fd?t=21.5&missing="
        assert got.headers["x-room"] == "room a b/c?d"
        assert got.headers["host"] == f"127.0.0.1:{target.port}"
        sent = json.loads(got.body)
        assert sent == {"temp": 21.5, "note": 'said: he said "hi" \\ left', "all": data}
        event = await receive(ws)
        assert event["event"] == "endpoint_call_response" and event["endpoint"] == "hook"
        assert (event["status"], event["attempts"], event["error"]) == (201, 1, None)
        assert json.loads(event["body"]) == {"stored": 1} and event["user"] == ADMIN
        assert isinstance(event["duration"], int) and isinstance(event["ts"], int)


async def test_without_a_body_template_the_call_data_is_forwarded_as_json(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    async with running_target(Reply(200, b"plain words", "text/plain")) as target:
        await create_endpoint(http, admin_token, "fwd", {"url": target.url + "/in"})
        data = [1, "two", {"three": None}]
        called = await http.post(f"{ENDPOINTS}/fwd/call", json=data, headers=bearer(admin_token))
        assert called.status_code == 200 and called.text == "plain words"
        assert called.headers["content-type"].startswith("text/plain")
        got = target.received.get_nowait()
        assert (got.method, got.target) == ("POST", "/in")
        assert got.headers["content-type"] == "application/json"
        assert json.loads(got.body) == data
        # no body at all: nothing forwarded
        await http.post(f"{ENDPOINTS}/fwd/call", headers=bearer(admin_token))
        assert target.received.get_nowait().body == b""


async def test_a_failing_target_is_retried_then_given_up(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    failing = [Reply(500, b"down")] * (RETRIES + 1)
    auth = bearer(admin_token)
    async with connect(events_url(server, admin_token)) as ws:
        await subscribe(ws, {"event": "endpoint_call_response"})
        async with running_target(*failing) as target:
            await create_endpoint(http, admin_token, "flaky", {"url": target.url})
            called = await http.post(f"{ENDPOINTS}/flaky/call", json={}, headers=auth)
            assert called.status_code == 502
            refusal = "endpoint 'flaky': the target answered 500"
            assert called.json() == {"error": {"message": refusal}}
            assert target.received.qsize() == RETRIES + 1
            event = await receive(ws)
            assert (event["status"], event["attempts"], event["body"]) == (500, RETRIES + 1, "down")
            assert event["error"] == "the target answered 500"
        # the target is gone: connection refused, each attempt, then given up
        called = await http.post(f"{ENDPOINTS}/flaky/call", json={}, headers=auth)
        assert called.status_code == 502
        assert "the target cannot be reached" in called.json()["error"]["message"]
        event = await receive(ws)
        assert (event["status"], event["attempts"]) == (None, RETRIES + 1)
        assert event["error"].startswith("the target cannot be reached")


async def test_a_4xx_or_a_redirect_is_not_retried(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    moved = Reply(302, b"", "text/plain")
    async with running_target(Reply(404, b"no"), moved) as target:
        await create_endpoint(http, admin_token, "once", {"url": target.url})
        called = await http.post(f"{ENDPOINTS}/once/call", headers=bearer(admin_token))
        assert called.status_code == 502 and "answered 404" in called.json()["error"]["message"]
        assert target.received.qsize() == 1
        called = await http.post(f"{ENDPOINTS}/once/call", headers=bearer(admin_token))
        assert "302 (redirects are not followed)" in called.json()["error"]["message"]
        assert target.received.qsize() == 2


async def test_the_answer_kept_is_bounded(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    async with running_target(Reply(200, b"x" * 100_000, "text/plain")) as target:
        await create_endpoint(http, admin_token, "big", {"url": target.url})
        called = await http.post(f"{ENDPOINTS}/big/call", headers=bearer(admin_token))
        assert called.status_code == 200 and called.text == "x" * 64


@pytest.mark.parametrize("value", ["caf\u00e9", "\u2603", "a\x0bb", "a\x1bb", "a\x7fb", "a\nb"])
async def test_a_header_filled_with_what_a_header_cannot_carry_is_refused(
    value: str, http: httpx.AsyncClient, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A header value filled from the call data with a character outside RFC 9110's field-value
    (not ASCII, a control character) is the caller's error (400): nothing is sent, nothing is
    retried, no traceback is logged."""
    async with running_target() as target:
        headers = [{"key": "X-Room", "value": "room {{room}}"}]
        await create_endpoint(http, admin_token, "hdr", {"url": target.url, "headers": headers})
        auth = bearer(admin_token)
        called = await http.post(f"{ENDPOINTS}/hdr/call", json={"room": value}, headers=auth)
        assert called.status_code == 400, called.text
        assert "X-Room" in called.json()["error"]["message"]
        assert target.received.empty()
        tabbed = await http.post(f"{ENDPOINTS}/hdr/call", json={"room": "a\tb c"}, headers=auth)
        assert tabbed.status_code == 200
        assert target.received.get_nowait().headers["x-room"] == "room a\tb c"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_full_queue_refuses_the_call_at_once(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    """One worker, a queue of one: with a call under way and one waiting, the next is refused."""
    async with running_target() as target:
        target.gate.clear()
        await create_endpoint(http, admin_token, "slow", {"url": target.url})
        url, auth = f"{ENDPOINTS}/slow/call", bearer(admin_token)
        first = asyncio.create_task(http.post(url, headers=auth))
        await target.received.get()  # under way, held by the target
        second = asyncio.create_task(http.post(url, headers=auth))
        third = asyncio.create_task(http.post(url, headers=auth))
        done, waiting = await asyncio.wait([second, third], return_when=asyncio.FIRST_COMPLETED)
        refused = done.pop().result()
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "endpoints_queue" in refused.json()["error"]["message"]
        target.gate.set()
        answered = [await first, await waiting.pop()]
        assert [r.status_code for r in answered] == [200, 200]


async def test_no_request_url_reaches_the_log(
    http: httpx.AsyncClient, admin_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An endpoint's URL may carry a key: httpx's request lines (INFO) stay out of the log."""
    caplog.set_level(logging.DEBUG)
    async with running_target() as target:
        await create_endpoint(http, admin_token, "keyed", {"url": target.url + "/?apikey=s3cr3t"})
        called = await http.post(f"{ENDPOINTS}/keyed/call", headers=bearer(admin_token))
        assert called.status_code == 200
        assert target.received.get_nowait().target == "/?apikey=s3cr3t"
    assert "s3cr3t" not in caplog.text


async def test_stopping_the_server_ends_the_calls_under_way(settings: Settings) -> None:
    """A call held by a slow target is let finish while the server drains; at drain_timeout it
    is answered 503, and the stop goes on (it is never cut without an answer)."""
    roost = Roost(dataclasses.replace(settings, drain_timeout=0.5))
    await roost.start()
    stopped = False
    try:
        async with (
            running_target() as target,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{roost.http_port}") as http,
        ):
            target.gate.clear()
            try:
                token = await login(http)
                await create_endpoint(http, token, "slow", {"url": target.url})
                call = asyncio.create_task(
                    http.post(f"{ENDPOINTS}/slow/call", headers=bearer(token))
                )
                await target.received.get()  # under way, held by the target
                await roost.stop()
                stopped = True
                answered = await call
                assert answered.status_code == 503
                assert "shutting down" in answered.json()["error"]["message"]
            finally:
                target.gate.set()  # else the target's own stop waits for the held request
    finally:
        if not stopped:
            await roost.stop()
