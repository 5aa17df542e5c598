"""The Python device SDK in IOTMP mode against a scripted server replaying iotmp_session.json."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from roost.device import Device
from roost.errors import DeviceTimeout, InvalidInput, NotFound
from roost.wire import iotmp
from roost.wire.iotmp import KEEP_ALIVE_BYTES, Message, MessageType
from roost.wire.pson import PsonValue

from test_device_sdk import FakeServer, Peer, State, session_device
from vectors import captured, load_frames

T = MessageType
TIMEOUT = 5.0
SAMPLE_10 = Message(T.STREAM_DATA, 10, payload=23.5)


def typed(value: object) -> object:
    """Comparable form that keeps True apart from 1 and 1.0 apart from 1."""
    if isinstance(value, Message):
        fields = (value.parameters, value.payload, value.resource)
        return ("msg", value.type, value.stream_id, *(typed(v) for v in fields))
    if isinstance(value, dict):
        return ("dict", sorted((k, typed(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def decode(data: bytes) -> Message:
    [msg] = iotmp.Decoder().feed(data)
    return msg


async def read(peer: Peer, *, skip: Message | None = None, timeout: float = TIMEOUT) -> Message:
    """The device's next message, skipping messages equal to ``skip``."""
    skipped = None if skip is None else iotmp.encode(skip)
    return decode(await peer.read_raw(skip=skipped, timeout=timeout))


def send(peer: Peer, msg: Message) -> None:
    peer.send(iotmp.encode(msg))


async def accept(peer: Peer) -> Message:
    """Read the CONNECT and accept it, echoing its stream id."""
    connect = await read(peer)
    assert connect.type == T.CONNECT
    send(peer, Message(T.OK, connect.stream_id))
    return connect


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def devices() -> AsyncIterator[list[Device]]:
    started: list[Device] = []
    yield started
    for dev in started:
        await dev.stop()


async def connected(
    server: FakeServer, devices: list[Device], state: State | None = None, **options: Any
) -> tuple[Device, Peer]:
    dev = session_device(server.port, state or State(), protocol="iotmp", **options)
    devices.append(dev)
    await dev.start()
    peer = await server.next_peer()
    await accept(peer)
    await dev.wait_connected(TIMEOUT)
    return dev, peer


async def _start(server: FakeServer, dev: Device) -> Peer:
    await dev.start()
    peer = await server.next_peer()
    await accept(peer)
    await dev.wait_connected(TIMEOUT)
    return peer


# -- the captured session --------------------------------------------------------------------------

# (server frame, the device frames that answer it) in iotmp_session.json; the device's own frames
# (samples on stream 10, bucket writes, pushes on stream 13) are driven separately below.
SCRIPT: list[tuple[int, list[int]]] = [
    (2, [3]),  # RUN temperature -> OK 23.5
    (4, [5]),  # RUN location -> OK {lat, lon}
    (6, [7]),  # DESCRIBE -> the listing
    (8, [9]),  # DESCRIBE relay -> {"in": false}
    (10, [11]),  # DESCRIBE io -> {"in": .., "out": ..}
    (12, [13]),  # RUN relay true -> OK
    (14, [15]),  # RUN io -> {"mult": 12, "sum": 7}
    (16, [17]),  # RUN reset -> OK
    (18, [19]),  # RUN nope -> ERROR
    (20, [21, 22]),  # START_STREAM temperature every 2000 ms -> OK, first sample at once
    (27, [28, 30]),  # START_STREAM relay -> OK, STREAM_DATA true (the current input)
    (29, [31]),  # RUN relay false on the streamed relay -> OK, no echo
    (32, [33]),  # STREAM_DATA true into the relay stream -> the echo
    (35, [36, 37]),  # START_STREAM temperature, events only -> OK, STREAM_DATA at once
    (43, [44]),  # STOP_STREAM 10
    (45, [46]),  # STOP_STREAM 11
    (47, [48]),  # STOP_STREAM 13
]


async def test_session_replies_like_the_official_client(
    server: FakeServer, devices: list[Device]
) -> None:
    frames = load_frames("iotmp_session.json")
    raw = captured("iotmp_session.json")
    msgs = [decode(data) for data in raw]
    state = State()
    dev = session_device(server.port, state, protocol="iotmp")
    devices.append(dev)
    await dev.start()
    peer = await server.next_peer()

    connect = await read(peer)  # as captured, but with a stream id of its own
    assert connect.stream_id != 0
    assert typed(connect) == typed(msgs[0]._replace(stream_id=connect.stream_id))
    peer.send(raw[1])  # OK with the captured stream id: the client looks at the type only
    await dev.wait_connected(TIMEOUT)

    for request, replies in SCRIPT:
        assert frames[request]["from"] == "server"
        peer.send(raw[request])
        for index in replies:
            assert frames[index]["from"] == "device"
            skip = None if msgs[index] == SAMPLE_10 else SAMPLE_10
            got = await read(peer, skip=skip)
            assert typed(got) == typed(msgs[index]), frames[index]["note"]
        if request == 20:  # the firmware's bucket write
            assert await dev.write_bucket("temperature_log", 23.5)
            assert typed(await read(peer, skip=SAMPLE_10)) == typed(msgs[25])
        if request == 35:  # the firmware's push: on the event stream 13 only
            assert await dev.stream("temperature")
            assert typed(await read(peer, skip=SAMPLE_10)) == typed(msgs[38])
        if request == 12:
            assert state.relay is True
        if request in (29, 32):
            assert state.relay is (request == 32)

    assert state.resets == 1
    assert dev.start_stream_count == 3
    assert dev.received[-1] == Message(T.STOP_STREAM, 13)
    assert not await dev.stream("temperature")
    assert await peer.nothing_for(0.1)


async def test_rejected_connect_is_recorded_and_retried(
    server: FakeServer, devices: list[Device]
) -> None:
    rejected = captured("iotmp_auth_rejected.json")
    dev = session_device(server.port, State(), protocol="iotmp", reconnect_delay=0.1)
    devices.append(dev)
    await dev.start()

    first = await server.next_peer()
    connect = await read(first)
    assert typed(connect) == typed(decode(rejected[0])._replace(stream_id=connect.stream_id))
    first.send(rejected[1])  # ERROR
    assert await first.closed()
    assert dev.auth_failed and dev.auth_failures == 1
    assert not dev.is_connected

    second = await server.next_peer()  # retried after the delay, with a new random stream id
    await accept(second)
    await dev.wait_connected(TIMEOUT)
    assert not dev.auth_failed and dev.connect_count == 1


def test_protocol_and_default_ports() -> None:
    assert Device("a", "d", "c").port == 25200
    assert Device("a", "d", "c", protocol="iotmp").port == 25204
    assert Device("a", "d", "c", port=1234, protocol="iotmp").port == 1234
    with pytest.raises(InvalidInput):
        Device("a", "d", "c", protocol="mqtt")  # type: ignore[arg-type]


# -- connection lifecycle --------------------------------------------------------------------------


async def test_keep_alive_cadence_needs_no_answer(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices, keepalive_interval=0.05)
    for _ in range(3):  # never answered, as IOTMP-Linux does not check
        assert await peer.read_raw(timeout=1) == KEEP_ALIVE_BYTES
    assert dev.is_connected and dev.keepalives_sent >= 3 and dev.connect_count == 1


async def test_server_keep_alive_is_counted_not_answered(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices)
    peer.send(KEEP_ALIVE_BYTES)
    send(peer, Message(T.RUN, 8, resource="reset"))
    assert await read(peer) == Message(T.OK, 8)
    assert dev.keepalives_received == 1


async def test_disconnect_from_the_server_closes_and_reconnects(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, first = await connected(server, devices)
    send(first, Message(T.START_STREAM, 11, resource="relay"))
    assert await read(first) == Message(T.OK, 11)
    assert await read(first) == Message(T.STREAM_DATA, 11, payload=False)
    send(first, Message(T.DISCONNECT))
    assert await first.closed()

    second = await server.next_peer()
    assert dev.last_error == "disconnected by the server"
    await accept(second)
    await dev.wait_connected(TIMEOUT)
    assert dev.connect_count == 2
    assert not await dev.stream("relay")  # the stream died with the first connection
    send(second, Message(T.STREAM_DATA, 11, payload=True))
    send(second, Message(T.RUN, 12, resource="reset"))
    assert await read(second) == Message(T.OK, 12)  # no echo on the dead stream 11


# -- requests --------------------------------------------------------------------------------------


async def test_stream_id_zero_is_executed_without_reply(
    server: FakeServer, devices: list[Device]
) -> None:
    state = State()
    _, peer = await connected(server, devices, state)
    send(peer, Message(T.RUN, resource="reset"))
    send(peer, Message(T.RUN, resource="nope"))
    send(peer, Message(T.RUN, 8, resource="reset"))
    assert await read(peer) == Message(T.OK, 8)
    assert state.resets == 2


async def test_sampling_interval_and_stop(server: FakeServer, devices: list[Device]) -> None:
    _, peer = await connected(server, devices)
    send(peer, Message(T.START_STREAM, 10, parameters={"interval": 30}, resource="temperature"))
    assert await read(peer) == Message(T.OK, 10)
    for _ in range(4):  # the first at once, then one per interval
        assert await read(peer) == SAMPLE_10
    send(peer, Message(T.STOP_STREAM, 10))
    assert await read(peer, skip=SAMPLE_10) == Message(T.OK, 10)
    assert await peer.nothing_for(0.2)

    send(peer, Message(T.START_STREAM, 20, parameters=30, resource="location"))  # a bare number
    location: PsonValue = {"lat": 40.4168, "lon": -3.7038}
    assert await read(peer) == Message(T.OK, 20)
    for _ in range(2):
        assert await read(peer) == Message(T.STREAM_DATA, 20, payload=location)
    send(peer, Message(T.STOP_STREAM, 20))
    sample_20 = Message(T.STREAM_DATA, 20, payload=location)
    assert await read(peer, skip=sample_20) == Message(T.OK, 20)


async def test_push_goes_to_the_event_streams_only(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices)
    assert not await dev.stream("temperature")  # no stream open
    hourly = Message(T.START_STREAM, 10, parameters={"interval": 3_600_000}, resource="temperature")
    send(peer, hourly)
    assert await read(peer) == Message(T.OK, 10)
    assert await read(peer) == SAMPLE_10
    assert not await dev.stream("temperature")  # a sampled stream only: nothing to push on
    send(peer, Message(T.START_STREAM, 13, resource="temperature"))
    assert await read(peer) == Message(T.OK, 13)
    assert await read(peer) == Message(T.STREAM_DATA, 13, payload=23.5)
    assert await dev.stream("temperature")
    assert await read(peer) == Message(T.STREAM_DATA, 13, payload=23.5)
    assert await dev.stream("temperature", 99)
    assert await read(peer) == Message(T.STREAM_DATA, 13, payload=99)
    assert await peer.nothing_for(0.1)
    assert not await dev.stream("reset")


async def test_in_out_streams_and_unknown_streams(
    server: FakeServer, devices: list[Device]
) -> None:
    _, peer = await connected(server, devices)
    send(peer, Message(T.RUN, 19, resource="io"))  # no input: runs with the sample
    assert await read(peer) == Message(T.OK, 19, payload={"sum": 0, "mult": 0})
    send(peer, Message(T.START_STREAM, 20, resource="io"))
    assert await read(peer) == Message(T.OK, 20)
    assert await read(peer) == Message(T.STREAM_DATA, 20, payload={"sum": 0, "mult": 0})
    send(peer, Message(T.STREAM_DATA, 20, payload={"value1": 3, "value2": 4}))
    assert await read(peer) == Message(T.STREAM_DATA, 20, payload={"sum": 7, "mult": 12})
    send(peer, Message(T.STREAM_DATA, 99, payload=1))  # no such stream: ignored
    send(peer, Message(T.START_STREAM, 22, resource="nope"))
    assert await read(peer) == Message(T.ERROR, 22)
    send(peer, Message(T.STOP_STREAM, 23))
    assert await read(peer) == Message(T.ERROR, 23)
    send(peer, Message(T.START_STREAM, 24, resource="reset"))  # a run resource: no value
    assert await read(peer) == Message(T.OK, 24)
    send(peer, Message(T.STOP_STREAM, 24))
    assert await read(peer) == Message(T.OK, 24)


async def test_nested_resources_and_bad_paths(server: FakeServer, devices: list[Device]) -> None:
    dev = Device("alice", "dev1", "secret1", port=server.port, protocol="iotmp")
    devices.append(dev)
    calls: list[str] = []
    dev.output("a/b", lambda: 1)
    dev.run(["a", "c"], lambda: calls.append("c"))
    dev.output("z", lambda: 2)
    peer = await _start(server, dev)

    send(peer, Message(T.DESCRIBE, 1))
    listing: PsonValue = {"a/b": {"fn": 3}, "a/c": {"fn": 1}, "z": {"fn": 3}}
    assert await read(peer) == Message(T.OK, 1, payload=listing)
    send(peer, Message(T.RUN, 2, resource="a/b"))
    assert await read(peer) == Message(T.OK, 2, payload=1)
    send(peer, Message(T.RUN, 3, resource=["a", "b"]))  # IE also sends a list of names
    assert await read(peer) == Message(T.OK, 3, payload=1)
    send(peer, Message(T.DESCRIBE, 4, resource="a/b"))
    assert await read(peer) == Message(T.OK, 4, payload={"out": 1})
    send(peer, Message(T.RUN, 5, resource="a/c"))
    assert await read(peer) == Message(T.OK, 5)
    assert calls == ["c"]
    send(peer, Message(T.DESCRIBE, 6, resource="a"))  # a container describes as {}
    assert await read(peer) == Message(T.OK, 6, payload={})
    bad: list[PsonValue] = ["a/x", "a//b", "", "/a", 5, None, [1], ["x"], {"a": 1}]
    for sid, resource in enumerate(bad, start=10):
        send(peer, Message(T.RUN, sid, resource=resource))
        assert await read(peer) == Message(T.ERROR, sid), resource


async def test_failing_callbacks_answer_error(server: FakeServer, devices: list[Device]) -> None:
    dev = Device("alice", "dev1", "secret1", port=server.port, protocol="iotmp")
    devices.append(dev)

    def broken() -> float:
        raise RuntimeError("sensor unplugged")

    dev.output("broken", broken)
    dev.output("weird", lambda: {1, 2})
    dev.output("fine", lambda: "ok")
    peer = await _start(server, dev)
    send(peer, Message(T.RUN, 1, resource="broken"))
    assert await read(peer) == Message(T.ERROR, 1, payload={"error": "sensor unplugged"})
    send(peer, Message(T.RUN, 2, resource="weird"))
    assert await read(peer) == Message(T.ERROR, 2, payload={"error": "cannot encode the result"})
    send(peer, Message(T.RUN, 3, resource="fine"))
    assert await read(peer) == Message(T.OK, 3, payload="ok")


# -- device -> server ------------------------------------------------------------------------------


async def test_device_to_server_messages(server: FakeServer, devices: list[Device]) -> None:
    dev, peer = await connected(server, devices, request_timeout=0.3)

    assert await dev.call_endpoint("ep", {"a": 1})
    assert await read(peer) == Message(T.RUN, parameters="ep", payload={"a": 1}, resource=4)
    assert await dev.call_device("dev2", "relay", True)
    assert typed(await read(peer)) == typed(
        Message(T.RUN, parameters=["dev2", "relay"], payload=True, resource=3)
    )

    confirmed = asyncio.create_task(dev.set_property("p", {"x": 1}, confirm=True))
    request = await read(peer)
    assert request.stream_id != 0
    assert request == Message(T.RUN, request.stream_id, "p", {"x": 1}, resource=2)
    send(peer, Message(T.OK, request.stream_id))
    assert await confirmed is True

    refused = asyncio.create_task(dev.write_bucket("b", 1, confirm=True))
    request = await read(peer)
    assert request == Message(T.RUN, request.stream_id, "b", 1, resource=5)
    send(peer, Message(T.ERROR, request.stream_id))
    assert await refused is False

    with pytest.raises(DeviceTimeout):
        await dev.call_endpoint("ep", confirm=True)
    unanswered = await read(peer)
    assert unanswered.type == T.RUN and unanswered.resource == 4 and unanswered.stream_id != 0

    prop = asyncio.create_task(dev.get_property("p"))
    request = await read(peer)
    assert request == Message(T.RUN, request.stream_id, "p", resource=1)
    assert request.stream_id != 0
    send(peer, Message(T.OK, request.stream_id, payload={"x": 1}))
    assert await prop == {"x": 1}

    missing = asyncio.create_task(dev.get_property("q"))
    request = await read(peer)
    send(peer, Message(T.ERROR, request.stream_id))
    with pytest.raises(NotFound):
        await missing


async def test_callback_may_await_a_confirmed_call(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices)

    async def report() -> None:
        assert await dev.write_bucket("log", 1, confirm=True)

    dev.run("report", report)
    send(peer, Message(T.RUN, 5, resource="report"))
    bucket = await read(peer)
    assert bucket.type == T.RUN and bucket.resource == 5 and bucket.parameters == "log"
    send(peer, Message(T.OK, bucket.stream_id))
    assert await read(peer) == Message(T.OK, 5)


async def test_confirmed_call_fails_when_the_connection_drops(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices)
    pending = asyncio.create_task(dev.write_bucket("b", 1, confirm=True))
    await read(peer)
    peer.writer.close()
    assert await pending is False
    assert not await dev.write_bucket("b", 1)  # offline until it reconnects
