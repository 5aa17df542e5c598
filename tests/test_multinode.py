"""Two real `roost serve` processes on one nats-server (ROOST_NATS_URL), sharing one data dir
(SQLite) or one PostgreSQL database: a device on node A answers REST calls, describes, resource
streams, events and stats streams on node B; a second connection of the device to B closes A's;
node A killed with SIGKILL, the device reconnects to B (the SDK's fallbacks) and calls succeed
again; NATS stopped and started again; a token revoked on A ends a stream on B; a device on B
calls a device on A; device-source buckets are fed once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from ports import free_port
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roost.bus.base import DeviceKey
from roost.bus.nats_link import reached_server
from roost.bus.nats_wire import decode, device_subject
from roost.device import Device

from conftest import ADMIN, ADMIN_PASSWORD, bearer, create_device, login
from nats_server import NatsServer, nats_server  # noqa: F401
from served_node import ServedNode, stop_all

DEVICE_URL = f"/v2/users/{ADMIN}/devices/dev1"
BAD_EVENTS = {"event": "(device|bucket)_.*"}  # refused: its error says the others were handled


class Node(ServedNode):
    """One `roost serve` process on its own free ports, its settings in its environment."""

    def __init__(
        self,
        name: str,
        data_dir: Path,
        nats_url: str,
        work: Path,
        database_url: str | None,
        settings: dict[str, str] | None = None,  # more ROOST_* variables
    ) -> None:
        self.ports = {"http": free_port(), "device": free_port(), "iotmp": free_port()}
        env = {
            **os.environ,
            "ROOST_DATA_DIR": str(data_dir),
            "ROOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ROOST_HTTP_PORT": str(self.ports["http"]),
            "ROOST_DEVICE_PORT": str(self.ports["device"]),
            "ROOST_IOTMP_PORT": str(self.ports["iotmp"]),
            "ROOST_NATS_URL": nats_url,
            "ROOST_CALL_TIMEOUT_MS": "3000",
            "ROOST_STREAM_RECHECK_INTERVAL": "600",  # a stream ends on a revocation, not later
        }
        if database_url is not None:
            env["ROOST_DATABASE_URL"] = database_url
        env.update(settings or {})
        super().__init__(name, ["serve"], env, work / f"node-{name}.log", self.ports["http"])

    @property
    def device_port(self) -> int:
        return self.ports["device"]

    def ws(self, path: str, token: str) -> str:
        return f"ws://127.0.0.1:{self.ports['http']}{path}?authorization={token}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The nodes' database: the data dir's SQLite file (None), or PostgreSQL (a fresh schema;
    skipped without one outside CI)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return None


@pytest.fixture
async def nodes(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    database: str | None,
) -> AsyncIterator[tuple[Node, Node]]:
    """Two nodes on one nats-server and one database; the key files in their shared data dir."""
    data = tmp_path / "data"
    a = Node("a", data, nats_server.url, tmp_path, database)
    started = [a]
    try:
        await a.ready()  # the first makes the admin and the keys; the second finds them
        b = Node("b", data, nats_server.url, tmp_path, database)
        started.append(b)
        await b.ready()
        yield a, b
    finally:
        await stop_all(started)


def sdk_device(node: Node, *others: Node, reconnect_delay: float = 0.2) -> Device:
    device = Device(
        user=ADMIN,
        device="dev1",
        credentials="secret1",
        port=node.device_port,
        reconnect_delay=reconnect_delay,
        fallbacks=[("127.0.0.1", other.device_port) for other in others],
    )
    device.output("temperature", lambda: 21.5)
    device.input_output("double", lambda value: 2 * (value or 0))
    return device


async def until(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def online(node: Node, token: str) -> bool:
    """Whether ``node`` sees dev1 connected (on whichever node holds it)."""
    response = await node.http.get(f"/v1/users/{ADMIN}/devices/dev1", headers=bearer(token))
    return bool(response.json()["connection"]["active"])


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def test_a_device_on_one_node_answers_the_api_of_the_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    token = await login(a.http)  # signed by the keys both nodes share
    await create_device(a.http, token)
    headers = bearer(token)
    stats_url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    async with (
        connect(b.ws(f"/v1/users/{ADMIN}/events", token)) as events,
        b.http.stream("GET", stats_url, headers={**headers, "Accept": "text/event-stream"}) as sse,
    ):
        await events.send(json.dumps({"event": "device_state_change"}))
        await events.send(json.dumps(BAD_EVENTS))
        assert "error" in await receive(events)
        lines = sse.aiter_lines()
        first = await asyncio.wait_for(anext(lines), 10)
        assert json.loads(first.removeprefix("data: "))["connected"] is False
        device = sdk_device(a)
        await device.start()
        try:
            await device.wait_connected(10)
            connected = await receive(events)  # heard on B from A, through NATS
            assert (connected["event"], connected["device"]) == ("device_state_change", "dev1")
            assert connected["state"] == "connected"
            data = ""
            while not data.startswith("data: ") or not json.loads(data[6:])["connected"]:
                data = await asyncio.wait_for(anext(lines), 10)  # the stats SSE on B
            await until(lambda: online(b, token))
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=headers)
            assert response.status_code == 200 and response.json() == {"out": 21.5}
            response = await b.http.post(f"{DEVICE_URL}/double", json={"in": 4}, headers=headers)
            assert response.status_code == 200 and response.json() == {"out": 8}
            listing = (await b.http.get(f"{DEVICE_URL}/api", headers=headers)).json()
            assert set(listing) == {"temperature", "double"}
            described = await b.http.get(f"{DEVICE_URL}/temperature/api", headers=headers)
            assert described.status_code == 200 and described.json() == {"out": 21.5}
            stream_url = b.ws(f"/v3/users/{ADMIN}/devices/dev1/resources", token)
            async with connect(stream_url) as stream:  # a resource stream on B, device on A
                request = {"resource": "temperature", "interval": 1, "enabled": True}
                await stream.send(json.dumps(request))
                frame = await receive(stream)
                while "out" not in frame:
                    frame = await receive(stream)
                assert frame == {"resource": "temperature", "out": 21.5}
        finally:
            await device.stop()
        left = await receive(events)
        assert (left["device"], left["state"]) == ("dev1", "disconnected")
        await until(lambda: _not(online(b, token)))
        response = await b.http.get(f"{DEVICE_URL}/temperature", headers=headers)
        assert response.status_code == 404  # no node holds it: answered at once


async def _not(check: Any) -> bool:
    return not await check


async def test_a_second_connection_on_another_node_closes_the_first(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    first = sdk_device(a, reconnect_delay=60)  # once closed, it stays away for this test
    second = sdk_device(b)
    await first.start()
    try:
        await first.wait_connected(10)
        await until(lambda: online(b, token))
        await second.start()
        await second.wait_connected(10)
        await until(lambda: _closed(first))
        for node in (a, b):  # both nodes reach the one session left, on B
            response = await node.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            assert response.status_code == 200 and response.json() == {"out": 21.5}
        assert second.is_connected and first.connect_count == 1
    finally:
        await first.stop()
        await second.stop()


async def _closed(device: Device) -> bool:
    return not device.is_connected


async def test_a_killed_node_s_devices_reconnect_to_another_and_answer_again(
    nodes: tuple[Node, Node],
) -> None:
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    device = sdk_device(a, b)  # A first, B when A cannot be reached
    await device.start()
    try:
        await device.wait_connected(10)
        await until(lambda: online(b, token))
        response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
        assert response.status_code == 200
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(10)
        deadline = time.monotonic() + 20
        while True:  # meanwhile B answers: 404 while the device is in transit, then 200
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                break
            assert time.monotonic() < deadline, "the device did not come back on node B"
            await asyncio.sleep(0.1)
        assert response.json() == {"out": 21.5}
        assert device.connect_count == 2 and device.port == b.device_port
    finally:
        await device.stop()


async def test_a_call_sent_to_a_holder_that_stopped_ends_when_the_device_comes_back(
    nodes: tuple[Node, Node],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """A call crossing to a node that stopped answering (SIGSTOP here; a SIGKILLed node can lose
    a call the same way, in the moment before NATS notices) ends soon after the device connects
    again to the calling node (roost.bus.nats.TAKEOVER_GRACE_S): 404, as the old holder would
    have ended it, not 504 once the call's time is up."""
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    first = sdk_device(a, reconnect_delay=60)
    second = sdk_device(b)
    sent = asyncio.Event()  # B's call went out to the device's subject (heard by a bystander)

    async def heard(msg: Msg) -> None:
        if decode(msg.data).get("op") == "request":
            sent.set()

    bystander = await nats.connect(nats_server.url)
    await bystander.subscribe(device_subject(DeviceKey(ADMIN, "dev1")), cb=heard)
    await reached_server(bystander)
    await first.start()
    try:
        await first.wait_connected(10)
        await until(lambda: online(b, token))
        a.process.send_signal(signal.SIGSTOP)
        url = f"{DEVICE_URL}/double?timeout=30000"  # B would wait 30 s for a silent A
        call = asyncio.ensure_future(b.http.post(url, json={"in": 4}, headers=bearer(token)))
        await asyncio.wait_for(sent.wait(), 10)
        await second.start()
        await second.wait_connected(10)
        response = await asyncio.wait_for(call, 10)
        assert response.status_code == 404, response.text
        assert "connected to another node" in response.json()["error"]["message"]
        again = await b.http.post(f"{DEVICE_URL}/double", json={"in": 4}, headers=bearer(token))
        assert again.status_code == 200 and again.json() == {"out": 8}
    finally:
        a.process.send_signal(signal.SIGCONT)
        await bystander.close()
        await first.stop()
        await second.stop()


async def test_a_device_source_bucket_is_fed_once_whichever_node_changed_it(
    nodes: tuple[Node, Node],
) -> None:
    """Each node feeds the buckets of the devices it holds: a sample is stored once, not once
    per node that knows the bucket; created on B (the device is on A, whose feed B's change
    reloads), then changed on A."""
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    device = sdk_device(a)
    await device.start()
    try:
        await device.wait_connected(10)
        config = {"source": "device", "device": "dev1", "resource": "temperature"}
        body = {"bucket": "temps", "name": "temps", "enabled": True}
        body["config"] = {**config, "update": "events"}
        response = await b.http.post(f"/v1/users/{ADMIN}/buckets", json=body, headers=bearer(token))
        assert response.status_code == 200, response.text
        response = await a.http.put(  # both nodes have now reloaded the bucket themselves
            f"/v1/users/{ADMIN}/buckets/temps", json={"name": "temps2"}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text

        async def streaming() -> bool:
            return bool(device.resource("temperature").streams)

        await until(streaming)
        data_url = f"/v1/users/{ADMIN}/buckets/temps/data"
        for value in range(1, 6):
            assert await device.stream("temperature", value)

            async def stored(value: int = value) -> bool:
                response = await b.http.get(data_url, params={"sort": "asc"}, headers=bearer(token))
                return value in [point["val"] for point in response.json()]

            await until(stored)
        response = await a.http.get(data_url, params={"sort": "asc"}, headers=bearer(token))
        assert [point["val"] for point in response.json()] == [1, 2, 3, 4, 5]
    finally:
        await device.stop()


async def test_a_token_deleted_on_one_node_ends_its_stream_on_the_other_at_once(
    nodes: tuple[Node, Node],
) -> None:
    """Node A deletes an access token: its revocation reaches node B, whose store drops the
    token record it kept (read a moment ago) before the stream there checks again, and ends."""
    a, b = nodes
    admin = await login(a.http)
    await create_device(a.http, admin)
    allow = {"Device": {"*": "AccessDeviceResources"}}
    body = {"token": "shared", "name": "shared", "enabled": True, "allow": allow}
    response = await a.http.post(f"/v1/users/{ADMIN}/tokens", json=body, headers=bearer(admin))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    device = sdk_device(a)
    await device.start()
    try:
        await device.wait_connected(10)
        await until(lambda: online(b, admin))
        stream_url = b.ws(f"/v3/users/{ADMIN}/devices/dev1/resources", token)
        async with connect(stream_url) as stream:
            request = {"resource": "temperature", "interval": 1, "enabled": True}
            await stream.send(json.dumps(request))
            frame = await receive(stream)
            while "out" not in frame:
                frame = await receive(stream)
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            assert response.status_code == 200  # node B has just read the token's record
            response = await a.http.delete(
                f"/v1/users/{ADMIN}/tokens/shared", headers=bearer(admin)
            )
            assert response.status_code == 200, response.text
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(10):  # long before the recheck interval
                    while True:  # frames until it ends
                        await receive(stream)
        response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
        assert response.status_code == 401
    finally:
        await device.stop()


async def test_a_device_on_one_node_calls_a_device_on_the_other(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    await create_device(a.http, token, "dev2", "secret2")
    target = sdk_device(a)
    caller = Device(
        user=ADMIN,
        device="dev2",
        credentials="secret2",
        port=b.ports["iotmp"],
        protocol="iotmp",  # its device-to-device calls wait for the answer
        reconnect_delay=0.2,
    )
    await target.start()
    await caller.start()
    try:
        await target.wait_connected(10)
        await caller.wait_connected(10)
        await until(lambda: online(b, token))
        assert await caller.ask_device("dev1", "temperature") == 21.5  # from B, to A, and back
        assert await caller.ask_device("dev1", "double", 5) == 10
    finally:
        await caller.stop()
        await target.stop()


async def test_while_nats_is_away_node_b_answers_503_then_recovers_by_itself(
    nodes: tuple[Node, Node],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    device = sdk_device(a)
    await device.start()
    try:
        await device.wait_connected(10)
        await until(lambda: online(b, token))
        nats_server.stop()

        async def unavailable() -> bool:
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            # 504: a call on its way when NATS went, ended at its deadline
            assert response.status_code in (200, 503, 504), response.text
            return response.status_code == 503

        await until(unavailable)  # once B knows NATS is gone: at once, not at the deadline
        response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        response = await a.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
        assert response.status_code == 200  # A holds the device: no need of NATS
        nats_server.start()

        async def answered() -> bool:
            response = await b.http.get(f"{DEVICE_URL}/temperature", headers=bearer(token))
            return response.status_code == 200

        await until(answered)  # both nodes reconnected, A's claim is back: no restart
        assert device.connect_count == 1
    finally:
        await device.stop()
