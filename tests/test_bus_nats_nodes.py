"""The bus contract (bus_contract.py) across two nodes on one nats-server: the devices connect to
node A, and everything the tests ask goes through node B's bus, so every request, watch, frame,
event and revocation crosses NATS between two nodes. Then what only two nodes can show: a device
taken over by another node, and a watch following a device that moves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import nats
import pytest

from roost.api.errors import status_of
from roost.bus.base import Bus, DeviceKey, Operation, ResourcePath
from roost.bus.nats import NatsBus, nats_bus
from roost.bus.nats_link import reached_server
from roost.bus.nats_wire import device_subject, encode
from roost.errors import PayloadTooLarge, Unavailable, UpstreamFailed
from roost.services import Services
from roost.wire.pson import PsonValue
from roost.wiring import BusFactory, build_services

from bus_contract import *  # noqa: F403
from bus_contract import _Device, _settle, _Sink, _until
from conftest import make_settings
from nats_server import SMALL_PAYLOAD, NatsServer, nats_server, small_nats_server  # noqa: F401
from pg_proxy import Proxy

_KEY = DeviceKey("alice", "dev1")


@pytest.fixture
def bus_factory(nats_server: NatsServer) -> BusFactory:  # noqa: F811
    return partial(nats_bus, url=nats_server.url)


async def _services(data: Path, bus_factory: BusFactory) -> Services:
    return await build_services(make_settings(data, call_timeout_ms=2000), bus=bus_factory)


async def _close(services: Services) -> None:
    await services.gateway.shutdown(grace=1)
    await asyncio.sleep(0.1)
    await services.gateway.shutdown(grace=1)
    await services.bus.close()
    await services.store.close()


@contextlib.asynccontextmanager
async def _two_nodes(
    tmp_path: Path, factory: BusFactory, factory_b: BusFactory | None = None
) -> AsyncIterator[tuple[Services, Services]]:
    """Nodes A and B (B's bus from ``factory_b`` if given), closed at the end."""
    a = await _services(tmp_path / "a", factory)
    b = await _services(tmp_path / "b", factory_b or factory)
    try:
        yield a, b
    finally:
        await _close(a)
        await _close(b)


@pytest.fixture
async def nodes(
    tmp_path: Path, bus_factory: BusFactory
) -> AsyncIterator[tuple[Services, Services]]:
    async with _two_nodes(tmp_path, bus_factory) as both:
        yield both


@pytest.fixture
async def checking_nodes(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> AsyncIterator[tuple[Services, Services]]:
    """Two nodes whose holders check their watcher nodes every 50 ms."""
    async with _two_nodes(
        tmp_path, partial(nats_bus, url=nats_server.url, watcher_check=0.05)
    ) as both:
        yield both


class _Across:
    """Node B's bus, as the contract uses it: what it asks waits until node A's own messages
    (the claim of a device that just connected there, say) have reached the NATS server, as a
    user of node B sees a device once node A has announced it, not in the same loop step."""

    def __init__(self, a: NatsBus, b: NatsBus) -> None:
        self._a, self._b = a, b

    def __getattr__(self, name: str) -> Any:
        return getattr(self._b, name)

    async def request(self, *args: Any) -> Any:
        await self._a.settled()
        return await self._b.request(*args)

    async def stats(self, key: DeviceKey) -> Any:
        await self._a.settled()
        return await self._b.stats(key)

    async def disconnect(self, key: DeviceKey, reason: str) -> bool:
        await self._a.settled()
        return await self._b.disconnect(key, reason)

    async def forget(self, key: DeviceKey) -> None:
        await self._a.settled()
        await self._b.forget(key)


@pytest.fixture
def node(nodes: tuple[Services, Services]) -> Services:
    """What the contract sees: node A's gateway (its devices connect there), node B's bus."""
    a, b = nodes
    assert isinstance(a.bus, NatsBus) and isinstance(b.bus, NatsBus)
    return dataclasses.replace(a, bus=cast(Bus, _Across(a.bus, b.bus)))


async def test_the_contract_crosses_nodes(nodes: tuple[Services, Services]) -> None:
    """The contract above runs on node B's bus for devices on node A: B holds nothing."""
    a, b = nodes
    assert isinstance(b.bus, NatsBus) and isinstance(a.bus, NatsBus)
    assert a.bus.node_id != b.bus.node_id
    device = _Device(a)
    await a.bus.settled()
    assert await b.bus.request(_KEY, Operation.CALL, ("temperature",), None, 1) == 21.5
    assert len(b.registry) == 0 and device.asked(Operation.CALL, ("temperature",)) == [None]


async def test_a_device_connecting_to_another_node_closes_its_first_session(
    nodes: tuple[Services, Services],
) -> None:
    a, b = nodes
    first = _Device(a)
    await a.bus.settled()
    assert await b.bus.request(_KEY, Operation.CALL, ("temperature",), None, 1) == 21.5
    second = _Device(b)
    await _until(lambda: first.closed is not None)
    assert first.closed == "connected to another node"
    await _until(lambda: len(a.registry) == 0)
    assert len(b.registry) == 1 and second.closed is None
    for bus in (a.bus, b.bus):  # both nodes reach the one session left, on B
        assert await bus.request(_KEY, Operation.CALL, ("x",), 7, 1) == 7
    assert len(second.asked(Operation.CALL, ("x",))) == 2
    assert (await a.bus.stats(_KEY)).connected


async def test_two_nodes_claiming_at_once_keep_exactly_one_session(
    nodes: tuple[Services, Services],
) -> None:
    a, b = nodes
    for _ in range(5):
        pair = _Device(a), _Device(b)  # in the same loop step: the claims cross

        def one_open(pair: tuple[_Device, _Device] = pair) -> bool:
            return sum(device.closed is None for device in pair) == 1

        await _until(one_open)
        for bus in (a.bus, b.bus, a.bus, b.bus):  # whatever is on its way has arrived
            assert isinstance(bus, NatsBus)
            await bus.settled()
        await _settle()
        assert one_open()
        survivor = pair[0] if pair[0].closed is None else pair[1]
        assert await a.bus.request(_KEY, Operation.CALL, ("x",), 1, 1) == 1
        assert await b.bus.request(_KEY, Operation.CALL, ("x",), 2, 1) == 2
        assert survivor.asked(Operation.CALL, ("x",)) == [1, 2]
        survivor.close("next round")
        await _until(lambda: len(a.registry) + len(b.registry) == 0)


async def test_a_watch_follows_the_device_to_another_node(
    nodes: tuple[Services, Services],
) -> None:
    a, b = nodes
    watcher = b.bus
    sink = _Sink()
    first = _Device(a)
    watcher.watch_stream(_KEY, ("temperature",), 0, sink)
    await _until(lambda: bool(first.asked(Operation.START_STREAM, ("temperature",))))
    first.stream(("temperature",), 1, event=True)
    await _until(lambda: {"resource": "temperature", "out": 1} in sink.frames)
    moved = _Device(b)  # the device moves to B: A's session closes, the watch goes to B
    await _until(lambda: bool(moved.asked(Operation.START_STREAM, ("temperature",))))
    moved.stream(("temperature",), 2, event=True)
    await _until(lambda: {"resource": "temperature", "out": 2} in sink.frames)
    back = _Device(a)  # and back to A
    await _until(lambda: bool(back.asked(Operation.START_STREAM, ("temperature",))))
    back.stream(("temperature",), 3, event=True)
    await _until(lambda: {"resource": "temperature", "out": 3} in sink.frames)
    watcher.unwatch_stream(_KEY, ("temperature",), sink)
    await _until(lambda: bool(back.asked(Operation.STOP_STREAM, ("temperature",))))


async def test_while_nats_is_away_requests_fail_at_once_then_everything_recovers(
    nodes: tuple[Services, Services],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    a, b = nodes
    assert isinstance(a.bus, NatsBus) and isinstance(b.bus, NatsBus)
    device = _Device(a)
    await a.bus.settled()
    assert await b.bus.request(_KEY, Operation.CALL, ("x",), 1, 1) == 1
    nats_server.stop()
    await _until(lambda: not a.bus.connected and not b.bus.connected)
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        await b.bus.request(_KEY, Operation.CALL, ("x",), 2, 5)
    assert time.monotonic() - started < 2.5  # well before the call's 5 s deadline
    assert status_of(raised.value) == 503
    with pytest.raises(Unavailable):
        await b.bus.stats(_KEY)
    assert await a.bus.request(_KEY, Operation.CALL, ("x",), 3, 1) == 3  # its own: no NATS
    nats_server.start()  # the same port: both nodes reconnect by themselves
    await _until(lambda: a.bus.connected and b.bus.connected, timeout=10)
    await a.bus.settled()
    assert await b.bus.request(_KEY, Operation.CALL, ("x",), 4, 1) == 4  # its claim is back
    assert device.asked(Operation.CALL, ("x",)) == [1, 3, 4]


async def test_the_watches_of_a_node_gone_end_on_the_node_holding_the_device(
    checking_nodes: tuple[Services, Services],
) -> None:
    """Node B watches a stream and the stats of a device on node A, then dies without a word
    (its NATS connection cut): A notices it is gone and the device stops streaming for it."""
    a, b = checking_nodes
    device = _Device(a)
    await a.bus.settled()
    b.bus.watch_stream(_KEY, ("temperature",), 0, _Sink())
    b.bus.watch_stats(_KEY)
    await _until(lambda: bool(device.asked(Operation.START_STREAM, ("temperature",))))
    assert isinstance(b.bus, NatsBus)
    await b.bus._link.client.close()  # as if killed: it unwatches nothing
    await _until(lambda: bool(device.asked(Operation.STOP_STREAM, ("temperature",))))
    assert await a.bus.request(_KEY, Operation.CALL, ("x",), 5, 1) == 5  # A goes on


async def test_a_watcher_node_that_is_there_keeps_its_watch(
    checking_nodes: tuple[Services, Services],
) -> None:
    a, b = checking_nodes
    device = _Device(a)
    await a.bus.settled()
    sink = _Sink()
    b.bus.watch_stream(_KEY, ("temperature",), 0, sink)
    await _until(lambda: bool(device.asked(Operation.START_STREAM, ("temperature",))))
    await asyncio.sleep(0.5)  # ten checks
    device.stream(("temperature",), 9, event=True)
    await _until(lambda: {"resource": "temperature", "out": 9} in sink.frames)
    assert not device.asked(Operation.STOP_STREAM, ("temperature",))


async def test_a_watcher_node_cut_off_for_a_while_gets_its_watch_back(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Node B, reaching NATS through a proxy, is cut off long enough for A to take it for gone
    (A drops B's watch: the device stops streaming); once B is back it carries its watch to A
    again, and its sink hears the device."""
    proxy = Proxy("127.0.0.1", nats_server.port)
    await proxy.start()
    direct = partial(nats_bus, url=nats_server.url, watcher_check=0.1)
    proxied = partial(nats_bus, url=f"nats://127.0.0.1:{proxy.port}", watcher_check=0.1)
    try:
        async with _two_nodes(tmp_path, direct, proxied) as (a, b):
            device = _Device(a)
            await a.bus.settled()
            sink = _Sink()
            b.bus.watch_stream(_KEY, ("temperature",), 0, sink)
            await _until(lambda: bool(device.asked(Operation.START_STREAM, ("temperature",))))
            await proxy.stop()  # B alive, cut off from NATS, reconnecting
            await _until(lambda: bool(device.asked(Operation.STOP_STREAM, ("temperature",))))
            await proxy.start()
            await _until(lambda: len(device.asked(Operation.START_STREAM, ("temperature",))) == 2)
            device.stream(("temperature",), 4, event=True)
            await _until(lambda: {"resource": "temperature", "out": 4} in sink.frames)
    finally:
        await proxy.stop()


async def test_a_garbled_watch_message_does_not_end_the_check_of_watcher_nodes(
    checking_nodes: tuple[Services, Services],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    a, b = checking_nodes
    device = _Device(a)
    await a.bus.settled()
    intruder = await nats.connect(nats_server.url)
    garbled = {"op": "watch_stats", "key": list(_KEY), "node": 5}  # not a node's name
    await intruder.publish(device_subject(_KEY), encode(garbled))
    await intruder.flush()
    await intruder.close()
    b.bus.watch_stream(_KEY, ("temperature",), 0, _Sink())
    await _until(lambda: bool(device.asked(Operation.START_STREAM, ("temperature",))))
    assert isinstance(b.bus, NatsBus)
    await b.bus._link.client.close()  # as if killed
    await _until(lambda: bool(device.asked(Operation.STOP_STREAM, ("temperature",))))


async def test_an_unreadable_answer_from_a_node_is_a_503_not_a_crash(
    nodes: tuple[Services, Services],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    _, b = nodes
    impostor = await nats.connect(nats_server.url)
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b'{"value": {"\\u0000bytes": 5}}')

        await impostor.subscribe(device_subject(_KEY), cb=answer)
        await reached_server(impostor)
        with pytest.raises(Unavailable) as raised:
            await b.bus.request(_KEY, Operation.CALL, ("x",), None, 1)
        assert status_of(raised.value) == 503
    finally:
        await impostor.close()


class _Verbose(_Device):
    """A device whose answer to a call is as many bytes as the call's payload says."""

    def send_request(
        self, stream_id: int, op: Operation, path: ResourcePath, payload: PsonValue
    ) -> None:
        assert isinstance(payload, int)
        self._loop.call_soon(self.session.resolve, stream_id, True, "x" * payload)


async def test_a_call_or_an_answer_longer_than_nats_carries_is_refused_at_once(
    tmp_path: Path,
    small_nats_server: NatsServer,  # noqa: F811
) -> None:
    async with _two_nodes(tmp_path, partial(nats_bus, url=small_nats_server.url)) as (a, b):
        _Verbose(a)
        assert isinstance(a.bus, NatsBus) and isinstance(b.bus, NatsBus)
        await a.bus.settled()
        fits = SMALL_PAYLOAD // 2
        assert await b.bus.request(_KEY, Operation.CALL, ("x",), fits, 5) == "x" * fits
        started = time.monotonic()
        with pytest.raises(UpstreamFailed, match="longer than the message bus carries") as failed:
            await b.bus.request(_KEY, Operation.CALL, ("x",), SMALL_PAYLOAD, 5)
        assert status_of(failed.value) == 502
        with pytest.raises(PayloadTooLarge, match="longer than the message bus") as refused:
            await b.bus.request(_KEY, Operation.CALL, ("x",), "x" * SMALL_PAYLOAD, 5)
        assert status_of(refused.value) == 413
        assert time.monotonic() - started < 2.5  # neither at the call's deadline
