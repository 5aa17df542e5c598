"""Device-to-device calls (issue 11, item 4): a device calls a resource of another device of its
user (legacy flag 9, IOTMP service 3) through the server and gets the reply on its request's
stream id; offline targets, unknown resources, deadlines and other users' devices are refused
with an error reply, never left unanswered."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
from typing import Any

import httpx
import pytest

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.device.client import ProtocolName
from roost.errors import NotFound
from roost.store.base import User
from roost.wire import iotmp, legacy
from roost.wire.iotmp import MessageType, Service
from roost.wire.legacy import Signal

from conftest import ADMIN, DeviceFactory, bearer, create_device, sdk_device, wait_for

PROTOCOLS: list[ProtocolName] = ["legacy", "iotmp"]
PAIRS = list(itertools.product(PROTOCOLS, PROTOCOLS))
IN_FLIGHT = 8  # device_calls_in_flight


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # short enough for the deadline test, long enough for a loaded box
    return dataclasses.replace(settings, call_timeout_ms=1500, device_calls_in_flight=IN_FLIGHT)


@pytest.fixture
async def registered(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token, "dev1", "secret1")
    await create_device(http, admin_token, "dev2", "secret2")


class Target:
    """dev2's resources, and what was done to them."""

    def __init__(self) -> None:
        self.relay = False
        self.calls = 0
        self.entered = asyncio.Event()  # the slow resource was called
        self.release = asyncio.Event()  # ... and may answer

    def attach(self, device: Device) -> Device:
        device.output("temperature", self._temperature)
        device.input("relay", self._set_relay, lambda: self.relay)
        device.input_output("io", self._io, {"value1": 0, "value2": 0})
        device.output("slow", self._slow)
        return device

    def _temperature(self) -> float:
        self.calls += 1
        return 23.5

    def _set_relay(self, on: Any) -> None:
        self.calls += 1
        self.relay = bool(on)

    def _io(self, data: Any) -> dict[str, Any]:
        self.calls += 1
        return {"sum": data["value1"] + data["value2"], "mult": data["value1"] * data["value2"]}

    async def _slow(self) -> str:
        self.entered.set()
        await self.release.wait()
        return "late"


async def start(
    server: Roost,
    connect: DeviceFactory,
    name: str,
    protocol: ProtocolName,
    target: Target | None = None,
    user: str = ADMIN,
) -> Device:
    credentials = "secret1" if name == "dev1" else "secret2"
    device = sdk_device(server, name, protocol, user=user, credentials=credentials)
    if target is not None:
        target.attach(device)
    return await connect(device)


@pytest.mark.parametrize(("caller_protocol", "target_protocol"), PAIRS)
async def test_a_device_calls_another_devices_resources(
    server: Roost,
    registered: None,
    connect_device: DeviceFactory,
    caller_protocol: ProtocolName,
    target_protocol: ProtocolName,
) -> None:
    target = Target()
    await start(server, connect_device, "dev2", target_protocol, target)
    caller = await start(server, connect_device, "dev1", caller_protocol)

    assert await caller.ask_device("dev2", "temperature") == 23.5
    io = await caller.ask_device("dev2", "io", {"value1": 3, "value2": 4})
    assert io == {"sum": 7, "mult": 12}
    assert await caller.ask_device("dev2", "relay", True) is None
    assert target.relay is True
    # acknowledged as the official clients ask (confirm_call), and not acknowledged at all
    assert await caller.call_device("dev2", "relay", False, confirm=True) is True
    assert target.relay is False
    assert await caller.call_device("dev2", "relay", True) is True

    async def relay_on() -> bool:
        return target.relay

    await wait_for(relay_on)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_offline_target_is_refused_at_once(
    server: Roost, registered: None, connect_device: DeviceFactory, protocol: ProtocolName
) -> None:
    # the device would wait 30 s; the refusal must come long before, not at a deadline
    caller = sdk_device(server, "dev1", protocol, request_timeout=30)
    await connect_device(caller)
    with pytest.raises(NotFound) as refused:
        await caller.ask_device("dev2", "temperature")
    if protocol == "iotmp":  # IOTMP's ERROR carries the reason
        assert "not connected" in str(refused.value)
    assert await caller.call_device("dev2", "temperature", confirm=True) is False
    assert await caller.call_device("nobody", "temperature", confirm=True) is False


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_another_users_device_is_refused(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    registered: None,
    connect_device: DeviceFactory,
    protocol: ProtocolName,
) -> None:
    await server.services.store.create_user(
        User(name="bob", password_hash="$argon2id$unused", role="user", created=0)
    )
    await create_device(http, admin_token, "dev3", "secret2", user="bob")
    await create_device(http, admin_token, "dev2", "secret2", user="bob")
    bobs = Target()
    bob3 = sdk_device(server, "dev3", protocol, user="bob", credentials="secret2")
    bob2 = sdk_device(server, "dev2", protocol, user="bob", credentials="secret2")
    await connect_device(bobs.attach(bob3))
    await connect_device(bobs.attach(bob2))
    caller = await start(server, connect_device, "dev1", protocol)

    # admin's dev1 names bob's devices: by id it finds none of its own, by any other form nothing
    for name in ("dev3", "bob/dev3", "bob:dev3", ""):
        with pytest.raises(NotFound):
            await caller.ask_device(name, "temperature")
    # admin's own dev2 is offline; bob's dev2 is not reached in its place
    with pytest.raises(NotFound):
        await caller.ask_device("dev2", "temperature")
    assert bobs.calls == 0
    # and bob's devices do reach each other
    assert await bob2.ask_device("dev3", "temperature") == 23.5
    assert bobs.calls == 1


@pytest.mark.parametrize(("caller_protocol", "target_protocol"), PAIRS)
async def test_unknown_resource_and_deadline_are_error_replies(
    server: Roost,
    registered: None,
    connect_device: DeviceFactory,
    caller_protocol: ProtocolName,
    target_protocol: ProtocolName,
) -> None:
    target = Target()
    await start(server, connect_device, "dev2", target_protocol, target)
    caller = sdk_device(server, "dev1", caller_protocol, request_timeout=30)
    await connect_device(caller)

    with pytest.raises(NotFound):
        await caller.ask_device("dev2", "nope")
    with pytest.raises(NotFound) as late:  # past call_timeout_ms, long before the device's 30 s
        await caller.ask_device("dev2", "slow")
    if caller_protocol == "iotmp":
        assert "did not answer" in str(late.value)
    target.release.set()
    assert await caller.ask_device("dev2", "temperature") == 23.5


@pytest.mark.parametrize(("caller_protocol", "target_protocol"), PAIRS)
async def test_caller_leaving_mid_call_breaks_nothing(
    server: Roost,
    http: httpx.AsyncClient,
    admin_token: str,
    registered: None,
    connect_device: DeviceFactory,
    caller_protocol: ProtocolName,
    target_protocol: ProtocolName,
) -> None:
    target = Target()
    await start(server, connect_device, "dev2", target_protocol, target)
    caller = await start(server, connect_device, "dev1", caller_protocol)

    waiting = asyncio.create_task(caller.ask_device("dev2", "slow"))
    await target.entered.wait()
    await caller.stop()
    with pytest.raises(ConnectionError):
        await waiting
    target.release.set()  # the reply now has no one to go to

    response = await http.get(
        f"/v2/users/{ADMIN}/devices/dev2/temperature", headers=bearer(admin_token)
    )
    assert response.status_code == 200 and response.json() == {"out": 23.5}
    again = await start(server, connect_device, "dev1", caller_protocol)
    assert await again.ask_device("dev2", "temperature") == 23.5


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_calls_in_flight_are_bounded(
    server: Roost, registered: None, connect_device: DeviceFactory, protocol: ProtocolName
) -> None:
    target = Target()
    await start(server, connect_device, "dev2", "legacy", target)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.device_port if protocol == "legacy" else server.iotmp_port
    )
    frames = RawFrames(protocol)
    writer.write(frames.auth())
    await frames.read(reader)  # authenticated
    for sid in range(1, IN_FLIGHT + 2):
        writer.write(frames.call(sid, "dev2", "slow"))
    # the one past the bound is refused at once, the others wait for dev2
    assert await frames.read(reader) == (IN_FLIGHT + 1, False)
    target.release.set()
    answered = {await frames.read(reader) for _ in range(IN_FLIGHT)}
    assert answered == {(sid, True) for sid in range(1, IN_FLIGHT + 1)}
    writer.close()


class TestFlood:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return dataclasses.replace(settings, device_frame_rate=20, device_flood_seconds=0.5)

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    async def test_calls_count_against_the_unasked_frame_allowance(
        self,
        server: Roost,
        registered: None,
        protocol: ProtocolName,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="roost")
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.device_port if protocol == "legacy" else server.iotmp_port
        )
        frames = RawFrames(protocol)
        writer.write(frames.auth())
        await frames.read(reader)
        block = frames.call(0, "nobody", "temperature") * 200  # unanswered calls, back to back
        async with asyncio.timeout(20):  # until the server closes the connection
            with contextlib.suppress(ConnectionError):
                while not reader.at_eof():
                    writer.write(block)
                    await writer.drain()
                    await asyncio.sleep(0)
                while await reader.read(4096):
                    pass
        assert any("flooding" in r.getMessage() for r in caplog.records)
        writer.close()


class RawFrames:
    """A device's side of one protocol, frame by frame (no SDK in between)."""

    def __init__(self, protocol: ProtocolName) -> None:
        self.protocol = protocol
        self.legacy = legacy.Decoder()
        self.iotmp = iotmp.Decoder()
        self.frames: list[tuple[int, bool]] = []

    def auth(self) -> bytes:
        credentials = [ADMIN, "dev1", "secret1"]
        if self.protocol == "legacy":
            return legacy.encode(legacy.Message(signal=Signal.AUTH, resource=credentials))
        return iotmp.encode(iotmp.Message(MessageType.CONNECT, 1, payload=credentials))

    def call(self, sid: int, device: str, resource: str) -> bytes:
        if self.protocol == "legacy":
            message = legacy.Message(sid, Signal.CALL_DEVICE, device, [resource])
            return legacy.encode(message)
        # the IOTMP-Embedded layout: service id in PARAMETERS (the SDK sends IOTMP-Linux's)
        run = iotmp.Message(
            MessageType.RUN, sid, parameters=int(Service.CALL_DEVICE), resource=[device, resource]
        )
        return iotmp.encode(run)

    async def read(self, reader: asyncio.StreamReader) -> tuple[int, bool]:
        """The next reply: (stream id, ok)."""
        while not self.frames:
            data = await asyncio.wait_for(reader.read(4096), 10)
            assert data, "connection closed"
            if self.protocol == "legacy":
                for frame in self.legacy.feed(data):
                    assert isinstance(frame, legacy.Message)
                    self.frames.append((frame.stream_id, frame.signal == Signal.REQUEST_OK))
            else:
                for message in self.iotmp.feed(data):
                    self.frames.append((message.stream_id, message.type == MessageType.OK))
        return self.frames.pop(0)
