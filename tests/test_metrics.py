"""GET /metrics: the Prometheus text of a real server, parsed with prometheus_client's parser,
moved by real devices (both protocols, TLS, /iotmp), calls, bucket writes and streams."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import ssl
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.store.base import StoreCounts, User
from roost.store.sqlite import SQLiteStore
from roost.wire import iotmp
from roost.wire.iotmp import Message, MessageType

from conftest import (
    ADMIN,
    DeviceFactory,
    bearer,
    create_device,
    login,
    make_settings,
    sdk_device,
    wait_for,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

FAMILIES = {
    "roost_devices_connected": "gauge",
    "roost_device_calls": "counter",
    "roost_device_call_seconds": "histogram",
    "roost_stream_watchers": "gauge",
    "roost_bucket_points_written": "counter",
    "roost_bus_requests": "counter",
    "roost_store_errors": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds": "counter",
    "process_open_fds": "gauge",
}
TOKENS = f"/v1/users/{ADMIN}/tokens"
DEVICES = f"/v1/users/{ADMIN}/devices"
BUCKETS = f"/v1/users/{ADMIN}/buckets"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", tls_self_signed=True)


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """The type of each family and the value of each sample, by name and labels."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return types, samples


async def scrape(http: httpx.AsyncClient, token: str) -> Samples:
    response = await http.get("/metrics", headers=bearer(token))
    assert response.status_code == 200, response.text
    return parse(response.text)[1]


def devices(samples: Samples, protocol: str, tls: bool = False) -> float:
    labels = (("protocol", protocol), ("tls", "true" if tls else "false"))
    return samples["roost_devices_connected", labels]


def calls(samples: Samples, outcome: str) -> float:
    return samples["roost_device_calls_total", (("outcome", outcome),)]


def watchers(samples: Samples, kind: str) -> float:
    return samples["roost_stream_watchers", (("kind", kind),)]


async def test_the_text_parses_with_every_family(http: httpx.AsyncClient, admin_token: str) -> None:
    response = await http.get("/metrics", headers=bearer(admin_token))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, samples = parse(response.text)
    for name, kind in FAMILIES.items():
        assert types.get(name) == kind, name
    assert devices(samples, "legacy") == devices(samples, "iotmp_websocket", tls=True) == 0
    assert samples["roost_device_call_seconds_count", ()] == 0
    assert samples["roost_device_call_seconds_bucket", (("le", "+Inf"),)] == 0
    assert samples["process_resident_memory_bytes", ()] > 0


async def test_each_kind_of_caller(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    assert (await http.get("/metrics")).status_code == 401
    assert (await http.get("/metrics", params={"authorization": admin_token})).status_code == 200
    # an admin's session past its expiry
    services = server.services
    assert services is not None
    expired = services.signer.access_token(ADMIN, int(time.time()) - 86_400)
    assert (await http.get("/metrics", headers=bearer(expired))).status_code == 401
    # a plain user's session
    body = {"user": "bob", "password": "bob-password"}
    assert (await http.post("/v1/users", json=body, headers=bearer(admin_token))).is_success
    bob = await login(http, "bob", "bob-password")
    assert (await http.get("/metrics", headers=bearer(bob))).status_code == 403
    # an admin's access tokens: only one allowing ReadServerMetrics, until it is deleted
    metrics_allow = {"User": {ADMIN: ["ReadServerMetrics"]}}
    for name, allow, status in (
        ("scraper", metrics_allow, 200),
        ("everything", {"*": {"*": ["*"]}}, 200),
        ("devices", {"Device": {"*": ["*"]}}, 403),
    ):
        made = await http.post(
            TOKENS, json={"token": name, "name": name, "allow": allow}, headers=bearer(admin_token)
        )
        assert made.status_code == 200, made.text
        token = made.json()["access_token"]
        assert (await http.get("/metrics", headers=bearer(token))).status_code == status, name
    # a user's access token allowing it: not an admin
    made = await http.post(
        "/v1/users/bob/tokens",
        json={"token": "bobs", "name": "bobs", "allow": {"User": {"bob": ["ReadServerMetrics"]}}},
        headers=bearer(bob),
    )
    assert made.status_code == 200, made.text
    bobs = made.json()["access_token"]
    assert (await http.get("/metrics", headers=bearer(bobs))).status_code == 403
    # an admin's device token
    await create_device(http, admin_token)
    minted = await http.post(
        f"{DEVICES}/dev1/tokens", json={"token_name": "dev"}, headers=bearer(admin_token)
    )
    assert minted.status_code == 200, minted.text
    device_token = minted.json()["token"]
    assert (await http.get("/metrics", headers=bearer(device_token))).status_code == 403


async def test_a_deleted_token_is_refused(http: httpx.AsyncClient, admin_token: str) -> None:
    allow = {"User": {ADMIN: ["ReadServerMetrics"]}}
    made = await http.post(
        TOKENS, json={"token": "s", "name": "s", "allow": allow}, headers=bearer(admin_token)
    )
    token = made.json()["access_token"]
    assert (await http.get("/metrics", headers=bearer(token))).status_code == 200
    assert (await http.delete(f"{TOKENS}/s", headers=bearer(admin_token))).is_success
    assert (await http.get("/metrics", headers=bearer(token))).status_code == 401


async def test_public_metrics_need_no_token_and_each_server_counts_its_own(
    tmp_path: Path, server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    """A second server in the same process: its own registry, its own counts."""
    other = Roost(make_settings(tmp_path / "other", metrics_public=True))
    await other.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{other.http_port}") as client:
            response = await client.get("/metrics")
            assert response.status_code == 200
            assert calls(parse(response.text)[1], "offline") == 0
        assert (await http.get("/metrics")).status_code == 401  # the first one is not public
        await create_device(http, admin_token)
        call = await http.get(f"/v2/users/{ADMIN}/devices/dev1/x", headers=bearer(admin_token))
        assert call.status_code == 404
        assert calls(await scrape(http, admin_token), "offline") == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{other.http_port}") as client:
            assert calls(parse((await client.get("/metrics")).text)[1], "offline") == 0
    finally:
        await other.stop()


async def test_devices_connected_by_protocol_and_tls(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    for name in ("d1", "d2", "d3", "d4"):
        await create_device(http, admin_token, name)
    legacy = await connect_device(sdk_device(server, "d1"))
    await connect_device(sdk_device(server, "d2", "iotmp"))
    cert = server.settings.data_dir / "tls" / "self-signed.crt"
    context = ssl.create_default_context(cafile=str(cert))
    tls = Device(ADMIN, "d3", "secret1", "localhost", server.ports["legacy_tls"], ssl=context)
    await connect_device(tls)
    connect_message = Message(MessageType.CONNECT, stream_id=1, payload=[ADMIN, "d4", "secret1"])
    url = f"ws://127.0.0.1:{server.http_port}/iotmp"
    async with connect(url, subprotocols=["iotmp"]) as ws:  # type: ignore[list-item]
        await ws.send(iotmp.encode(connect_message))
        assert await asyncio.wait_for(ws.recv(), 5) == bytes.fromhex("01 02 08 01")  # OK to 1
        samples = await scrape(http, admin_token)
        assert devices(samples, "legacy") == 1
        assert devices(samples, "iotmp") == 1
        assert devices(samples, "legacy", tls=True) == 1
        assert devices(samples, "iotmp", tls=True) == 0
        assert devices(samples, "iotmp_websocket") == 1
    await legacy.stop()

    async def gone() -> bool:
        samples = await scrape(http, admin_token)
        return devices(samples, "iotmp_websocket") == devices(samples, "legacy") == 0

    await wait_for(gone)
    assert devices(await scrape(http, admin_token), "iotmp") == 1


async def test_calls_by_outcome_and_their_latency(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token)
    device = sdk_device(server, protocol="iotmp")
    device.output("temperature", lambda: 21.5)

    async def slow() -> float:
        await asyncio.sleep(1)
        return 1.0

    device.output("slow", slow)
    await connect_device(device)
    before = await scrape(http, admin_token)
    auth = bearer(admin_token)
    call = f"/v2/users/{ADMIN}/devices/dev1"
    for _ in range(3):
        assert (await http.get(f"{call}/temperature", headers=auth)).status_code == 200
    assert (await http.get(f"{call}/absent", headers=auth)).status_code == 404
    assert (await http.get(f"{call}/slow", params={"timeout": 50}, headers=auth)).status_code == 504
    unknown = await http.get(f"/v2/users/{ADMIN}/devices/dev9/x", headers=auth)
    assert unknown.status_code == 404
    after = await scrape(http, admin_token)
    assert calls(after, "ok") - calls(before, "ok") == 3
    assert calls(after, "refused") - calls(before, "refused") == 1
    assert calls(after, "timeout") - calls(before, "timeout") == 1
    assert calls(after, "offline") - calls(before, "offline") == 1  # dev9: unknown
    count = "roost_device_call_seconds_count", ()
    assert after[count] - before[count] == 6
    # the call timed out after 50 ms lands above the 25 ms bucket (a margin: timers may fire a
    # hair early against perf_counter), the others on loopback well under 10 s
    fast, slowest = (("le", "0.025"),), (("le", "10.0"),)
    bucket = "roost_device_call_seconds_bucket"
    assert after[bucket, fast] - before.get((bucket, fast), 0) <= 5
    assert after[bucket, slowest] == after[count]
    assert after["roost_device_call_seconds_sum", ()] > 0.025
    bus = "roost_bus_requests_total", ()
    assert after[bus] - before[bus] == 6


async def test_bucket_writes_move_the_ingest_counter(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    body = {"bucket": "temp", "name": "temp", "enabled": True, "config": {"source": "api"}}
    assert (await http.post(BUCKETS, json=body, headers=auth)).status_code == 200
    written = "roost_bucket_points_written_total", ()
    before = (await scrape(http, admin_token))[written]
    data = f"{BUCKETS}/temp/data"
    assert (await http.post(data, json={"t": 1}, headers=auth)).status_code == 200
    many = [{"ts": 1_700_000_000_000 + i, "t": i} for i in range(3)]
    assert (await http.post(data, json=many, headers=auth)).status_code == 200
    assert (await scrape(http, admin_token))[written] - before == 4


async def test_streams_move_the_watchers_gauge(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> None:
    await create_device(http, admin_token)
    device = sdk_device(server)
    device.output("temperature", lambda: 21.5)
    await connect_device(device)
    assert watchers(await scrape(http, admin_token), "resource") == 0
    url = (
        f"ws://127.0.0.1:{server.http_port}/v3/users/{ADMIN}/devices/dev1/resources"
        f"?authorization={admin_token}"
    )
    async with connect(url) as ws:
        await ws.send(json.dumps({"resource": "temperature", "interval": 1, "enabled": True}))
        await asyncio.wait_for(ws.recv(), 5)  # the first sample: the stream is open
        assert watchers(await scrape(http, admin_token), "resource") == 1

    async def stopped() -> bool:
        return watchers(await scrape(http, admin_token), "resource") == 0

    await wait_for(stopped)
    # a stats stream (SSE) holds a stats watch while it is open
    assert watchers(await scrape(http, admin_token), "stats") == 0
    url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}", timeout=10) as sse,
        aconnect_sse(sse, "GET", url, headers=bearer(admin_token)) as source,
    ):
        events = source.aiter_sse()  # kept open: closing it early would close the connection
        await anext(events)  # the stats at once: the watch is held
        assert watchers(await scrape(http, admin_token), "stats") == 1

    async def released() -> bool:
        return watchers(await scrape(http, admin_token), "stats") == 0

    await wait_for(released)


async def test_store_failures_are_counted_by_operation(
    server: Roost, http: httpx.AsyncClient, admin_token: str, tmp_path: Path
) -> None:
    counts = StoreCounts()
    store = SQLiteStore(tmp_path / "alone.db", counts=counts)
    await store.open()
    try:
        await store.create_user(User("carol", "x", "user", 0))
        with pytest.raises(Exception, match="exists"):  # a Conflict is an answer, not a failure
            await store.create_user(User("carol", "x", "user", 0))
        assert not counts.failures
        with pytest.raises(sqlite3.OperationalError):
            await store._run(broken_query)
        assert counts.failures == {"broken_query": 1}
    finally:
        await store.close()
    services = server.services
    assert services is not None and isinstance(services.store, SQLiteStore)
    with pytest.raises(sqlite3.OperationalError):
        await services.store._run(broken_query)
    samples = await scrape(http, admin_token)
    assert samples["roost_store_errors_total", (("operation", "broken_query"),)] == 1


def broken_query(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT * FROM no_such_table")
