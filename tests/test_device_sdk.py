"""The Python device SDK against a scripted server that replays legacy_session.json."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ports import free_port

from roost.device import Device
from roost.errors import DeviceTimeout, NotFound
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE_BYTES, Frame, Message, Signal
from roost.wire.pson import PsonValue

from vectors import captured

S = Signal
TIMEOUT = 5.0
SAMPLE_10 = bytes.fromhex("01 10 08 0a 10 07 36 6a 09 03 6f 75 74 1d 00 00 bc 41")


class Peer:
    """The server side of one device connection, read frame by frame as raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def _varint(self, raw: bytearray) -> int:
        result = shift = 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            raw.append(byte)
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    async def read_raw(self, *, skip: bytes | None = None, timeout: float = TIMEOUT) -> bytes:
        """The next frame's bytes (header included), skipping frames equal to ``skip``."""
        async with asyncio.timeout(timeout):
            while True:
                raw = bytearray()
                await self._varint(raw)
                size = await self._varint(raw)
                raw += await self.reader.readexactly(size)
                if bytes(raw) != skip:
                    return bytes(raw)

    async def read(self, *, skip: bytes | None = None, timeout: float = TIMEOUT) -> Frame:
        [frame] = legacy.Decoder().feed(await self.read_raw(skip=skip, timeout=timeout))
        return frame

    async def nothing_for(self, seconds: float) -> bool:
        """True if the device sends nothing (and keeps the connection) for ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self.reader.readexactly(1)
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True once the device closes the connection (bytes before that are discarded)."""
        async with asyncio.timeout(timeout):
            while await self.reader.read(4096):
                pass
        return True

    def send(self, data: bytes | Frame) -> None:
        self.writer.write(data if isinstance(data, bytes) else legacy.encode(data))

    async def accept(self) -> None:
        """Read the AUTH, accept it and answer the first keep-alive."""
        auth = await self.read()
        assert isinstance(auth, Message) and auth.signal == S.AUTH
        self.send(Message(signal=S.REQUEST_OK))
        assert await self.read_raw() == KEEP_ALIVE_BYTES
        self.send(KEEP_ALIVE_BYTES)


class FakeServer:
    def __init__(self) -> None:
        self.peers: asyncio.Queue[Peer] = asyncio.Queue()
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await self.peers.put(Peer(reader, writer))

    async def next_peer(self, timeout: float = TIMEOUT) -> Peer:
        async with asyncio.timeout(timeout):
            return await self.peers.get()

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    await fake.start()
    yield fake
    await fake.close()


class State:
    def __init__(self) -> None:
        self.relay = False
        self.resets = 0


@pytest.fixture
async def devices() -> AsyncIterator[list[Device]]:
    started: list[Device] = []
    yield started
    for dev in started:
        await dev.stop()


def session_device(port: int, state: State, **options: Any) -> Device:
    """The resources of the captured Linux-client session."""
    options.setdefault("reconnect_delay", 0.05)
    dev = Device(
        user="alice", device="dev1", credentials="secret1", host="127.0.0.1", port=port, **options
    )

    async def set_relay(value: bool) -> None:
        await asyncio.sleep(0)
        state.relay = value

    def reset() -> None:
        state.resets += 1

    dev.output("temperature", lambda: 23.5)
    dev.output("location", lambda: {"lat": 40.4168, "lon": -3.7038})
    dev.input("relay", set_relay, getter=lambda: state.relay)
    dev.input_output(
        "io",
        lambda inp: {"sum": inp["value1"] + inp["value2"], "mult": inp["value1"] * inp["value2"]},
        sample={"value1": 0, "value2": 0},
    )
    dev.run("reset", reset)
    return dev


async def connected(
    server: FakeServer, devices: list[Device], state: State | None = None, **options: Any
) -> tuple[Device, Peer]:
    dev = session_device(server.port, state or State(), **options)
    devices.append(dev)
    await dev.start()
    peer = await server.next_peer()
    await peer.accept()
    await dev.wait_connected(TIMEOUT)
    return dev, peer


async def test_session_is_byte_identical_to_the_official_client(
    server: FakeServer, devices: list[Device]
) -> None:
    frames = captured("legacy_session.json")
    state = State()
    dev = session_device(server.port, state)
    devices.append(dev)
    await dev.start()
    peer = await server.next_peer()

    assert await peer.read_raw() == frames[0]  # AUTH alice/dev1/secret1
    assert frames[0] == bytes.fromhex(
        "01 1b 10 05 26 72 16 4a 05 61 6c 69 63 65 4a 04 64 65 76 31 4a 07 73 65 63 72 65 74 31"
    )
    peer.send(frames[1])
    assert await peer.read_raw() == frames[2]  # keep-alive right after auth
    peer.send(frames[3])
    await dev.wait_connected(TIMEOUT)

    assert await dev.write_bucket("temperature_log", 23.5)
    assert await peer.read_raw() == frames[4]

    # read, read, api, describe input, describe in/out, write, call, run, unknown
    for request in range(5, 23, 2):
        peer.send(frames[request])
        assert await peer.read_raw() == frames[request + 1], f"reply to frame {request}"
    assert state.relay is True and state.resets == 1

    peer.send(frames[23])  # START_STREAM temperature every 2000 ms
    assert await peer.read_raw() == frames[24]  # OK
    assert await peer.read_raw() == frames[25] == SAMPLE_10  # first sample at once
    assert await dev.stream("temperature")
    assert await peer.read_raw(skip=SAMPLE_10) == frames[27]  # STREAM_EVENT {"out": 23.5}

    peer.send(frames[30])  # START_STREAM relay, events only
    assert await peer.read_raw(skip=SAMPLE_10) == frames[31]
    assert await peer.read_raw(skip=SAMPLE_10) == frames[33]  # {"in": true}
    peer.send(frames[32])  # relay = false on the streamed relay
    assert await peer.read_raw(skip=SAMPLE_10) == frames[34]  # OK
    assert await peer.read_raw(skip=SAMPLE_10) == frames[35]  # STREAM_EVENT {"in": false}
    assert state.relay is False

    peer.send(frames[37])  # STOP_STREAM temperature
    assert await peer.read_raw(skip=SAMPLE_10) == frames[39]
    peer.send(frames[40])  # STOP_STREAM relay
    assert await peer.read_raw() == frames[41]
    assert not await dev.stream("temperature")
    assert dev.start_stream_count == 2
    assert dev.received[-1] == Message(11, S.STOP_STREAM, resource=["relay"])


async def test_rejected_auth_is_recorded_and_retried(
    server: FakeServer, devices: list[Device]
) -> None:
    rejected = captured("legacy_auth_rejected.json")
    dev = session_device(server.port, State(), reconnect_delay=0.1)
    devices.append(dev)
    await dev.start()

    first = await server.next_peer()
    assert await first.read_raw() == rejected[0]
    first.send(rejected[1])  # 01 02 10 02
    assert await first.closed()
    assert dev.auth_failed and dev.auth_failures == 1
    assert not dev.is_connected
    with pytest.raises(TimeoutError):
        await dev.wait_connected(0.01)

    second = await server.next_peer()  # retried after the delay
    assert await second.read_raw() == rejected[0]
    second.send(bytes.fromhex("01 02 10 01"))
    await dev.wait_connected(TIMEOUT)
    assert not dev.auth_failed and dev.auth_failures == 1 and dev.connect_count == 1


async def test_keep_alive_cadence_and_unanswered_keep_alive(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices, keepalive_interval=0.05)
    for _ in range(4):  # answered: the device keeps sending one per interval
        assert await peer.read_raw(timeout=1) == KEEP_ALIVE_BYTES
        peer.send(KEEP_ALIVE_BYTES)
    assert dev.is_connected and dev.keepalives_sent >= 5

    assert await peer.read_raw(timeout=1) == KEEP_ALIVE_BYTES  # left unanswered
    assert await peer.closed(timeout=1)
    again = await server.next_peer()
    assert dev.last_error == "keep-alive not answered"
    await again.accept()
    await dev.wait_connected(TIMEOUT)
    assert dev.connect_count == 2


async def test_server_keep_alive_is_not_answered(server: FakeServer, devices: list[Device]) -> None:
    dev, peer = await connected(server, devices)
    peer.send(KEEP_ALIVE_BYTES)
    peer.send(bytes.fromhex("01 0c 08 08 26 72 07 4a 05 72 65 73 65 74"))  # run reset, sid 8
    assert await peer.read_raw() == bytes.fromhex("01 04 08 08 10 01")
    assert dev.keepalives_received == 2


async def test_reconnects_after_the_server_drops_and_clears_streams(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, first = await connected(server, devices)
    first.send(Message(11, S.START_STREAM, resource=["relay"]))
    assert await first.read() == Message(11, S.REQUEST_OK)
    assert await first.read() == Message(11, S.STREAM_EVENT, payload={"in": False})
    first.writer.close()

    second = await server.next_peer()
    await second.accept()
    await dev.wait_connected(TIMEOUT)
    assert dev.connect_count == 2
    assert not await dev.stream("relay")
    second.send(Message(12, resource=["relay"], payload=True))
    assert await second.read() == Message(12, S.REQUEST_OK)
    assert await second.nothing_for(0.2)  # no STREAM_EVENT: the stream died with the connection


async def test_stream_id_zero_is_executed_without_reply(
    server: FakeServer, devices: list[Device]
) -> None:
    state = State()
    _, peer = await connected(server, devices, state)
    peer.send(Message(0, resource=["reset"]))
    peer.send(Message(0, resource=["nope"]))
    peer.send(Message(8, resource=["reset"]))
    assert await peer.read() == Message(8, S.REQUEST_OK)
    assert state.resets == 2


async def test_sampling_interval_and_stop(server: FakeServer, devices: list[Device]) -> None:
    _, peer = await connected(server, devices)
    peer.send(Message(10, S.START_STREAM, resource=["temperature"], payload=30))
    assert await peer.read() == Message(10, S.REQUEST_OK)
    for _ in range(3):
        assert await peer.read() == Message(10, S.STREAM_SAMPLE, payload={"out": 23.5})
    peer.send(Message(10, S.STOP_STREAM, resource=["temperature"]))
    assert await peer.read(skip=SAMPLE_10) == Message(10, S.REQUEST_OK)
    assert await peer.nothing_for(0.2)


async def test_in_out_stream_events(server: FakeServer, devices: list[Device]) -> None:
    _, peer = await connected(server, devices)
    peer.send(Message(19, resource=["io"]))  # no input: runs with the sample
    assert await peer.read() == Message(19, S.REQUEST_OK, payload={"sum": 0, "mult": 0})
    peer.send(Message(20, S.START_STREAM, resource=["io"]))
    assert await peer.read() == Message(20, S.REQUEST_OK)
    assert await peer.read() == Message(
        20, S.STREAM_EVENT, payload={"out": {"sum": 0, "mult": 0}, "in": {"value1": 0, "value2": 0}}
    )
    peer.send(Message(21, resource=["io"], payload={"value1": 3, "value2": 4}))
    assert await peer.read() == Message(21, S.REQUEST_OK, payload={"sum": 7, "mult": 12})
    assert await peer.read() == Message(
        20,
        S.STREAM_EVENT,
        payload={"out": {"sum": 7, "mult": 12}, "in": {"value1": 3, "value2": 4}},
    )
    peer.send(Message(22, S.START_STREAM, resource=["nope"]))
    assert await peer.read() == Message(22, S.REQUEST_ERROR)
    peer.send(Message(23, S.STOP_STREAM, resource=["nope"]))
    assert await peer.read() == Message(23, S.REQUEST_ERROR)


async def test_nested_resources_and_bad_paths(server: FakeServer, devices: list[Device]) -> None:
    dev = Device("alice", "dev1", "secret1", port=server.port, reconnect_delay=0.05)
    devices.append(dev)
    calls: list[str] = []
    dev.output("a/b", lambda: 1)
    dev.run(["a", "c"], lambda: calls.append("c"))
    await dev.start()
    peer = await server.next_peer()
    await peer.accept()

    peer.send(Message(1, resource=["api"]))
    api: PsonValue = {
        "a": {"al": 0, "fn": 0, "/": {"b": {"al": 0, "fn": 3}, "c": {"al": 0, "fn": 1}}}
    }
    assert await peer.read() == Message(1, S.REQUEST_OK, payload=api)
    peer.send(Message(2, resource=["a", "b"]))
    assert await peer.read() == Message(2, S.REQUEST_OK, payload=1)
    peer.send(Message(3, resource=["a", "b", "api"]))
    assert await peer.read() == Message(3, S.REQUEST_OK, payload={"out": 1})
    peer.send(Message(4, resource=["a", "c"]))
    assert await peer.read() == Message(4, S.REQUEST_OK)
    assert calls == ["c"]
    bad: list[tuple[int, PsonValue]] = [
        (5, ["a", "x"]),
        (6, [1]),
        (7, None),
        (8, "a"),
        (9, ["x", "api"]),
    ]
    for sid, resource in bad:
        peer.send(Message(sid, resource=resource))
        assert await peer.read() == Message(sid, S.REQUEST_ERROR), resource


async def test_failing_callbacks_answer_request_error(
    server: FakeServer, devices: list[Device]
) -> None:
    dev = Device("alice", "dev1", "secret1", port=server.port, reconnect_delay=0.05)
    devices.append(dev)

    def broken() -> float:
        raise RuntimeError("sensor unplugged")

    dev.output("broken", broken)
    dev.output("weird", lambda: {1, 2})
    dev.output("fine", lambda: "ok")
    await dev.start()
    peer = await server.next_peer()
    await peer.accept()
    for sid, name in [(1, "broken"), (2, "weird")]:
        peer.send(Message(sid, resource=[name]))
        assert await peer.read() == Message(sid, S.REQUEST_ERROR)
    peer.send(Message(3, resource=["fine"]))
    assert await peer.read() == Message(3, S.REQUEST_OK, payload="ok")


async def test_device_to_server_messages(server: FakeServer, devices: list[Device]) -> None:
    dev, peer = await connected(server, devices, request_timeout=0.3)

    assert await dev.call_endpoint("ep", {"a": 1})
    assert await peer.read() == Message(signal=S.CALL_ENDPOINT, identifier="ep", payload={"a": 1})
    assert await dev.call_device("dev2", "relay", True)
    assert await peer.read() == Message(
        signal=S.CALL_DEVICE, identifier="dev2", resource=["relay"], payload=True
    )

    confirmed = asyncio.create_task(dev.set_property("p", {"x": 1}, confirm=True))
    request = await peer.read()
    assert isinstance(request, Message) and request.stream_id != 0
    assert request == Message(request.stream_id, S.SET_PROPERTY, identifier="p", payload={"x": 1})
    peer.send(Message(request.stream_id, S.REQUEST_OK))
    assert await confirmed is True

    refused = asyncio.create_task(dev.call_endpoint("ep", confirm=True))
    request = await peer.read()
    assert isinstance(request, Message)
    peer.send(Message(request.stream_id, S.REQUEST_ERROR))
    assert await refused is False

    with pytest.raises(DeviceTimeout):
        await dev.write_bucket("b", 1, confirm=True)
    unanswered = await peer.read()
    assert isinstance(unanswered, Message) and unanswered.signal == S.BUCKET_DATA

    prop = asyncio.create_task(dev.get_property("p"))
    assert await peer.read() == Message(0, S.GET_PROPERTY, identifier="p")
    peer.send(Message(signal=S.REQUEST_OK, payload={"x": 1}))
    assert await prop == {"x": 1}

    missing = asyncio.create_task(dev.get_property("q"))
    assert await peer.read() == Message(0, S.GET_PROPERTY, identifier="q")
    peer.send(Message(signal=S.REQUEST_ERROR))
    with pytest.raises(NotFound):
        await missing


async def test_callback_may_await_a_confirmed_call(
    server: FakeServer, devices: list[Device]
) -> None:
    dev, peer = await connected(server, devices)

    async def report() -> None:
        assert await dev.write_bucket("log", 1, confirm=True)

    dev.run("report", report)
    peer.send(Message(5, resource=["report"]))
    bucket = await peer.read()
    assert isinstance(bucket, Message) and bucket.signal == S.BUCKET_DATA
    peer.send(Message(bucket.stream_id, S.REQUEST_OK))
    assert await peer.read() == Message(5, S.REQUEST_OK)


async def test_offline_device(devices: list[Device]) -> None:
    port = free_port()  # a port with nothing listening
    dev = Device("alice", "dev1", "secret1", port=port, reconnect_delay=0.05)
    devices.append(dev)
    dev.output("temperature", lambda: 23.5)
    assert not await dev.write_bucket("b", 1)
    assert not await dev.stream("temperature")
    with pytest.raises(ConnectionError):
        await dev.get_property("p")
    await dev.start()
    with pytest.raises(TimeoutError):
        await dev.wait_connected(0.2)
    assert dev.last_error is not None and "Error" in dev.last_error
