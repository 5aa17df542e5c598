"""The Bus contract: what every bus must do, through the public Bus interface only.

A module per implementation (``test_bus_local.py``, ``test_bus_wire.py``, ``test_bus_nats.py``)
provides a ``bus_factory`` fixture (given the node's LocalBus, the bus to test, as
``roost.wiring.build_services`` takes it) and imports these tests with ``import *``. Each test
builds a node as Roost does and connects devices to it the way a protocol listener does (through the
gateway, over a link that answers at the next loop step); everything else is asked of the bus.
Helpers are private (leading underscore) so that only the tests and the fixture are exported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from roost.bus import events
from roost.bus.base import (
    Bus,
    DeviceKey,
    Event,
    Frame,
    Operation,
    ResourcePath,
    Revocation,
    Revoked,
    Stats,
)
from roost.errors import DeviceOffline, DeviceTimeout, ResourceUnavailable
from roost.services import Services
from roost.wire.pson import PsonValue
from roost.wiring import BusFactory, build_services

from conftest import make_settings

_KEY = DeviceKey("alice", "dev1")
_OTHER = DeviceKey("alice", "dev2")
_TEMPERATURE: ResourcePath = ("temperature",)
_HUMIDITY: ResourcePath = ("humidity",)
_LISTING: PsonValue = {"temperature": {"fn": 2}, "relay": {"fn": 1}}


@pytest.fixture
async def node(tmp_path: Path, bus_factory: BusFactory) -> AsyncIterator[Services]:
    """A Roost node's Services, with the bus under test; no listeners."""
    settings = make_settings(tmp_path / "data", call_timeout_ms=2000)
    services = await build_services(settings, bus=bus_factory)
    try:
        yield services
    finally:
        await services.gateway.shutdown(grace=1)  # closes the devices' links
        await _settle()  # their sessions end a step later, as over a connection
        await services.gateway.shutdown(grace=1)  # and what their ends started is done
        await services.bus.close()
        await services.store.close()


class _Device:
    """A connected device: its link records what it is asked and answers at the next loop step
    (an echo of the payload, else 21.5; a description; nothing when silent)."""

    def __init__(self, services: Services, key: DeviceKey = _KEY) -> None:
        self._services = services
        self._loop = asyncio.get_running_loop()
        self.requests: list[tuple[int, Operation, ResourcePath, PsonValue]] = []
        self.silent = False
        self.refused: set[Operation] = set()
        self.closed: str | None = None
        self.session = services.gateway.open_session(key, self, "10.0.0.7")

    # Link

    def send_request(
        self, stream_id: int, op: Operation, path: ResourcePath, payload: PsonValue
    ) -> None:
        self.requests.append((stream_id, op, path, payload))
        if self.silent:
            return
        answer: PsonValue = None
        if op is Operation.CALL:
            answer = 21.5 if payload is None else payload
        elif op is Operation.DESCRIBE:
            answer = _LISTING if not path else {"out": 21.5}
        ok = op not in self.refused
        self._loop.call_soon(self.session.resolve, stream_id, ok, answer)

    def kind(self) -> tuple[str, bool]:
        return "test", False

    def close(self, reason: str) -> None:
        if self.closed is None:  # the connection goes, and its session ends with it
            self.closed = reason
            self._loop.call_soon(self._services.gateway.end_session, self.session, reason)

    # what the test makes it do

    def asked(self, op: Operation, path: ResourcePath) -> list[PsonValue]:
        return [payload for _, o, p, payload in self.requests if o is op and p == path]

    def stream(self, path: ResourcePath, value: PsonValue, event: bool = False) -> None:
        """Send a sample (or an event) on the stream the device was last asked to open."""
        started = [i for i, op, p, _ in self.requests if op is Operation.START_STREAM and p == path]
        assert self.session.stream_data(started[-1], {"out": value}, event)

    def count_traffic(self, rx: int, tx: int) -> None:
        self.session.count_traffic(rx, tx)


class _Sink:
    """A watcher's sink: keeps every frame."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def put(self, frame: Frame) -> None:
        self.frames.append(frame)


async def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


async def _settle() -> None:
    """Long enough for anything on its way over any bus to have arrived."""
    await asyncio.sleep(0.1)


async def _listening(bus: Bus) -> None:
    """Until what this bus asked of the others (a subscription) is in place everywhere: at once on
    a bus in one process; a bus over a server says how (NatsBus.settled: a round trip)."""
    settled = getattr(bus, "settled", None)
    if settled is not None:
        await settled()


def _bus(node: Services) -> Bus:
    return node.bus


# requests


async def test_a_call_reaches_the_device_and_brings_its_answer(node: Services) -> None:
    device = _Device(node)
    bus = _bus(node)
    assert await bus.request(_KEY, Operation.CALL, _TEMPERATURE, None, 1) == 21.5
    value: PsonValue = {"in": [1, 2.5, "x", True, None, {"nested": -3}], "float": 2.0}
    assert await bus.request(_KEY, Operation.CALL, ("a", "b"), value, 1) == value
    firmware = bytes(range(256))  # an OTA chunk
    assert await bus.request(_KEY, Operation.CALL, ("$ota", "write"), firmware, 1) == firmware
    assert device.asked(Operation.CALL, ("a", "b")) == [value]


async def test_describe_brings_the_listing_or_one_resource(node: Services) -> None:
    _Device(node)
    bus = _bus(node)
    assert await bus.request(_KEY, Operation.DESCRIBE, (), None, 1) == _LISTING
    assert await bus.request(_KEY, Operation.DESCRIBE, _TEMPERATURE, None, 1) == {"out": 21.5}


async def test_a_request_to_an_offline_device_raises_when_awaited_not_when_made(
    node: Services,
) -> None:
    bus = _bus(node)
    pending = bus.request(_OTHER, Operation.CALL, _TEMPERATURE, None, 1)  # must not raise here
    with pytest.raises(DeviceOffline):
        await pending
    never_awaited = bus.request(_OTHER, Operation.DESCRIBE, (), None, 1)
    assert isinstance(never_awaited, Awaitable)
    await asyncio.gather(never_awaited, return_exceptions=True)  # no "never awaited" warning


async def test_a_silent_device_times_out_at_the_deadline(node: Services) -> None:
    device = _Device(node)
    device.silent = True
    started = time.monotonic()
    with pytest.raises(DeviceTimeout):
        await _bus(node).request(_KEY, Operation.CALL, _TEMPERATURE, None, 0.2)
    assert 0.15 < time.monotonic() - started < 1.0


async def test_a_refusal_is_resource_unavailable(node: Services) -> None:
    device = _Device(node)
    device.refused.add(Operation.CALL)
    with pytest.raises(ResourceUnavailable):
        await _bus(node).request(_KEY, Operation.CALL, ("nothing",), None, 1)


async def test_a_device_leaving_mid_call_fails_the_call_at_once(node: Services) -> None:
    device = _Device(node)
    device.silent = True
    call = asyncio.ensure_future(_bus(node).request(_KEY, Operation.CALL, _TEMPERATURE, None, 30))
    await _until(lambda: bool(device.requests))
    started = time.monotonic()
    device.close("connection lost")
    with pytest.raises(DeviceOffline):
        await call
    assert time.monotonic() - started < 1.0


# stats


async def test_stats_live_then_remembered(node: Services) -> None:
    bus = _bus(node)
    assert await bus.stats(_OTHER) == Stats(False, None, None, 0, 0)  # never seen
    device = _Device(node)
    device.count_traffic(10, 20)
    live = await bus.stats(_KEY)
    assert live.connected and live.ip_address == "10.0.0.7" and live.connected_ts is not None
    assert (live.rx_bytes, live.tx_bytes) == (10, 20)
    device.close("gone")
    await _until(lambda: device.session.closed)
    await _settle()
    last = await bus.stats(_KEY)
    assert not last.connected and (last.rx_bytes, last.tx_bytes) == (10, 20)


async def test_watched_stats_are_published_as_events_until_released(node: Services) -> None:
    bus = _bus(node)
    heard: list[dict[str, object]] = []

    def listener(event: Event) -> None:
        if event.name == events.DEVICE_STATS:
            heard.append(dict(event.fields))

    bus.subscribe_events(_KEY.owner, listener)
    bus.watch_stats(_KEY)
    bus.watch_stats(_OTHER)
    await bus.stats(_KEY)  # what a watcher does next: once it has its answer, it is watching
    device = _Device(node)
    await _until(lambda: any(e["connected"] for e in heard))
    device.count_traffic(7, 9)
    await _until(lambda: any(e["rx_bytes"] == 7 and e["tx_bytes"] == 9 for e in heard))
    assert {e["device"] for e in heard} == {_KEY.device}  # the other device did nothing
    bus.unwatch_stats(_KEY)
    await bus.stats(_KEY)
    heard.clear()
    device.count_traffic(1, 1)
    device.close("gone")
    await _settle()
    assert heard == []  # released: its changes are no longer published
    bus.unwatch_stats(_OTHER)
    bus.unsubscribe_events(_KEY.owner, listener)


# resource streams


async def test_watchers_share_one_device_stream_at_the_fastest_interval(node: Services) -> None:
    device = _Device(node)
    bus = _bus(node)
    slow, fast, every = _Sink(), _Sink(), _Sink()
    bus.watch_stream(_KEY, _TEMPERATURE, 5, slow)
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE) == [5000])
    bus.watch_stream(_KEY, _TEMPERATURE, 1, fast)
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE) == [5000, 1000])
    assert device.asked(Operation.STOP_STREAM, _TEMPERATURE) == [None]  # the slower one went
    bus.watch_stream(_KEY, _TEMPERATURE, 0, every)  # every sample the stream carries
    await _settle()
    assert len(device.asked(Operation.START_STREAM, _TEMPERATURE)) == 2  # no new device stream
    device.stream(_TEMPERATURE, 21.0)  # due for everyone
    await _until(lambda: all(sink.frames for sink in (slow, fast, every)))
    assert slow.frames == fast.frames == every.frames == [{"resource": "temperature", "out": 21.0}]
    device.stream(_TEMPERATURE, 22.0)  # a sample too soon for the slow and the fast watcher
    device.stream(_TEMPERATURE, 23.0, event=True)  # an event: everyone, at once
    await _until(lambda: len(every.frames) == 3 and len(slow.frames) == len(fast.frames) == 2)
    await _settle()
    assert [f["out"] for f in every.frames] == [21.0, 22.0, 23.0]
    assert [f["out"] for f in fast.frames] == [f["out"] for f in slow.frames] == [21.0, 23.0]
    for sink in (slow, fast, every):
        bus.unwatch_stream(_KEY, _TEMPERATURE, sink)


async def test_watching_again_retunes_and_the_last_to_leave_stops_the_stream(
    node: Services,
) -> None:
    device = _Device(node)
    bus = _bus(node)
    first, second = _Sink(), _Sink()
    bus.watch_stream(_KEY, _TEMPERATURE, 2, first)
    bus.watch_stream(_KEY, _TEMPERATURE, 2, second)
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE) == [2000])
    bus.watch_stream(_KEY, _TEMPERATURE, 0.5, first)  # retuned, not a second watch
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE)[-1:] == [500])
    bus.unwatch_stream(_KEY, _TEMPERATURE, first)
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE)[-1:] == [2000])
    bus.unwatch_stream(_KEY, _TEMPERATURE, second)
    starts = len(device.asked(Operation.START_STREAM, _TEMPERATURE))
    await _until(lambda: len(device.asked(Operation.STOP_STREAM, _TEMPERATURE)) == starts)
    await _settle()
    assert len(device.asked(Operation.START_STREAM, _TEMPERATURE)) == starts  # stopped for good
    bus.unwatch_stream(_KEY, _TEMPERATURE, second)  # releasing twice is harmless


async def test_watchers_hear_the_device_leave_and_return_and_streams_resume(
    node: Services,
) -> None:
    device = _Device(node)
    bus = _bus(node)
    sink = _Sink()
    bus.watch_stream(_KEY, _TEMPERATURE, 1, sink)
    bus.watch_stream(_KEY, _HUMIDITY, 1, sink)
    await _until(lambda: bool(device.asked(Operation.START_STREAM, _HUMIDITY)))
    device.close("connection lost")
    await _until(lambda: {"device": "dev1", "connected": False} in sink.frames)
    back = _Device(node)
    await _until(lambda: {"device": "dev1", "connected": True} in sink.frames)
    await _until(
        lambda: (
            bool(back.asked(Operation.START_STREAM, _TEMPERATURE))
            and bool(back.asked(Operation.START_STREAM, _HUMIDITY))
        )
    )
    await _settle()
    notices = [f for f in sink.frames if "connected" in f]
    assert notices == [  # once per sink, however many resources it watches
        {"device": "dev1", "connected": False},
        {"device": "dev1", "connected": True},
    ]
    back.stream(_HUMIDITY, 40)
    await _until(lambda: {"resource": "humidity", "out": 40} in sink.frames)
    bus.unwatch_stream(_KEY, _TEMPERATURE, sink)
    bus.unwatch_stream(_KEY, _HUMIDITY, sink)


async def test_a_refused_stream_tells_its_watchers(node: Services) -> None:
    device = _Device(node)
    device.refused.add(Operation.START_STREAM)
    sink = _Sink()
    _bus(node).watch_stream(_KEY, ("secret",), 1, sink)
    await _until(lambda: bool(sink.frames))
    assert sink.frames[0]["resource"] == "secret"
    assert sink.frames[0]["error"] == {"message": "resource not available on the device"}
    _bus(node).unwatch_stream(_KEY, ("secret",), sink)


async def test_a_watch_on_an_offline_device_starts_when_it_connects(node: Services) -> None:
    bus = _bus(node)
    sink = _Sink()
    bus.watch_stream(_KEY, _TEMPERATURE, 0, sink)
    await _settle()
    device = _Device(node)
    await _until(lambda: device.asked(Operation.START_STREAM, _TEMPERATURE) == [0])
    device.stream(_TEMPERATURE, 1, event=True)
    await _until(lambda: {"resource": "temperature", "out": 1} in sink.frames)
    bus.unwatch_stream(_KEY, _TEMPERATURE, sink)


# disconnecting, forgetting


async def test_disconnect_closes_the_device_connection(node: Services) -> None:
    device = _Device(node)
    bus = _bus(node)
    assert await bus.disconnect(_KEY, "device disabled") is True
    assert device.closed == "device disabled"
    await _until(lambda: device.session.closed)
    await _settle()
    assert not (await bus.stats(_KEY)).connected
    with pytest.raises(DeviceOffline):
        await bus.request(_KEY, Operation.CALL, _TEMPERATURE, None, 1)
    assert await bus.disconnect(_KEY, "again") is False
    assert await bus.disconnect(_OTHER, "never connected") is False


async def test_forget_drops_what_is_remembered_of_a_deleted_device(node: Services) -> None:
    device = _Device(node)
    device.count_traffic(5, 5)
    device.close("gone")
    await _until(lambda: device.session.closed)
    await _settle()
    bus = _bus(node)
    assert (await bus.stats(_KEY)).rx_bytes == 5
    await bus.forget(_KEY)
    assert await bus.stats(_KEY) == Stats(False, None, None, 0, 0)


# revocations


async def test_revocations_reach_the_listeners_of_their_user(node: Services) -> None:
    bus = _bus(node)
    heard: list[Revocation] = []
    others: list[Revocation] = []
    bus.watch_revocations("alice", heard.append)
    bus.watch_revocations("bob", others.append)
    revocation = Revocation("alice", Revoked.DEVICE, "dev1", "device deleted")
    await bus.announce(revocation)
    await _until(lambda: bool(heard))
    await bus.announce(Revocation("alice", Revoked.SESSIONS, None, "password changed"))
    await _until(lambda: len(heard) == 2)
    assert heard[0] == revocation and heard[1].what is Revoked.SESSIONS and heard[1].id is None
    bus.unwatch_revocations("alice", heard.append)
    await bus.announce(Revocation("alice", Revoked.USER, None, "user disabled"))
    await _settle()
    assert len(heard) == 2 and others == []
    bus.unwatch_revocations("bob", others.append)


# server events


async def test_events_reach_the_subscribers_of_their_user_only(node: Services) -> None:
    bus = _bus(node)
    heard: list[Event] = []
    others: list[Event] = []
    bus.subscribe_events("alice", heard.append)
    bus.subscribe_events("bob", others.append)
    event = events.bucket_export_completed("alice", "temps", 1000, file="a.csv", min_ts=0)
    bus.publish(event)
    await _until(lambda: bool(heard))
    assert heard == [event]  # it crossed whatever the bus carries it on, unchanged
    assert heard[0].to_client() == {
        "event": "bucket_export_completed",
        "bucket": "temps",
        "file": "a.csv",
        "min_ts": 0,
        "ts": 1000,
        "user": "alice",
    }
    bus.unsubscribe_events("alice", heard.append)
    bus.publish(events.endpoint_call_response("alice", "hook", 2000, status=200))
    await _settle()
    assert len(heard) == 1 and others == []
    bus.unsubscribe_events("bob", others.append)


async def test_a_device_connecting_and_leaving_is_published(node: Services) -> None:
    bus = _bus(node)
    heard: list[Event] = []
    bus.subscribe_events("alice", heard.append)
    await _listening(bus)  # the device's node publishes: this node's subscription must be in place
    device = _Device(node)
    await _until(lambda: len(heard) == 1)
    device.close("bye")
    await _until(lambda: len(heard) == 2)
    states = [(e.name, e.fields["device"], e.fields["state"]) for e in heard]
    assert states == [
        ("device_state_change", "dev1", "connected"),
        ("device_state_change", "dev1", "disconnected"),
    ]
    assert all(isinstance(e.fields["ts"], int) for e in heard)
    bus.unsubscribe_events("alice", heard.append)
