"""The legacy device listener with raw sockets: auth, keep-alive, bad frames, replacement, stats."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse

from roost.app import Roost
from roost.bus.base import DeviceKey
from roost.config import Settings
from roost.net.connection import KEPT_FIELD_BYTES, KEPT_FIELDS
from roost.net.legacy import LegacyConnection
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE_BYTES, Message, Signal

from conftest import ADMIN, ADMIN_PASSWORD, bearer, create_device, make_settings, wait_for

AUTH_OK = bytes.fromhex("01 02 10 01")
AUTH_ERROR = bytes.fromhex("01 02 10 02")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        auth_timeout=0.5,
        keepalive_timeout=0.8,
        sse_keepalive=0.3,
        sse_min_interval=0.05,
        max_frame_bytes=1024,
    )


class RawDevice:
    """A device driven byte by byte from the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = legacy.Decoder()

    @classmethod
    async def connect(cls, server: Roost) -> RawDevice:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.device_port)
        return cls(reader, writer)

    async def auth(self, device: str = "dev1", credentials: str = "secret1") -> bytes:
        self.send(Message(signal=Signal.AUTH, resource=[ADMIN, device, credentials]))
        return await asyncio.wait_for(self.reader.readexactly(4), 5)

    def send(self, frame: legacy.Frame) -> None:
        self.writer.write(legacy.encode(frame))

    async def next_frame(self, timeout: float = 5) -> legacy.Frame:
        frames: list[legacy.Frame] = []
        while not frames:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                raise ConnectionError("closed by server")
            frames = self.decoder.feed(data)
        assert len(frames) == 1
        return frames[0]

    async def closed_by_server(self, timeout: float = 5) -> bool:
        try:
            while await asyncio.wait_for(self.reader.read(4096), timeout):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def registered(http: httpx.AsyncClient, admin_token: str) -> None:
    await create_device(http, admin_token)


async def test_official_auth_frame_is_accepted(server: Roost, registered: None) -> None:
    # the exact bytes of the official Linux client, with this server's user name
    device = await RawDevice.connect(server)
    frame = bytes.fromhex("01 1b 10 05 26 72 16 4a 05") + b"admin"
    frame += bytes.fromhex("4a 04 64 65 76 31 4a 07 73 65 63 72 65 74 31")
    device.writer.write(frame)
    assert await device.reader.readexactly(4) == AUTH_OK
    device.writer.write(KEEP_ALIVE_BYTES)
    assert await device.reader.readexactly(2) == KEEP_ALIVE_BYTES
    device.close()


@pytest.mark.parametrize(
    ("device", "credentials"), [("dev1", "wrong-secret"), ("ghost", "secret1")]
)
async def test_bad_credentials_are_refused(
    server: Roost, registered: None, device: str, credentials: str
) -> None:
    raw = await RawDevice.connect(server)
    assert await raw.auth(device, credentials) == AUTH_ERROR
    assert await raw.closed_by_server()


async def test_silent_connection_is_cut_after_auth_timeout(server: Roost) -> None:
    raw = await RawDevice.connect(server)
    started = time.monotonic()
    assert await raw.closed_by_server()
    assert 0.4 < time.monotonic() - started < 3


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("07 00"),  # unknown frame type
        bytes.fromhex("01 ff ff ff ff 0f"),  # declared body far over the limit
        bytes.fromhex("02 01 00"),  # keep-alive with a body
        bytes.fromhex("01 02 10 01"),  # a reply instead of AUTH
        bytes.fromhex("01 03 26 4a 80"),  # resource string running past the body
    ],
)
async def test_bad_first_frames_close_only_that_connection(
    server: Roost, registered: None, garbage: bytes
) -> None:
    good = await RawDevice.connect(server)
    assert await good.auth() == AUTH_OK
    bad = await RawDevice.connect(server)
    bad.writer.write(garbage)
    assert await bad.closed_by_server()
    good.writer.write(KEEP_ALIVE_BYTES)
    assert await good.reader.readexactly(2) == KEEP_ALIVE_BYTES
    good.close()


async def test_bad_frame_after_auth_drops_the_session(
    server: Roost, registered: None, http: httpx.AsyncClient, admin_token: str
) -> None:
    raw = await RawDevice.connect(server)
    assert await raw.auth() == AUTH_OK
    raw.writer.write(bytes.fromhex("01 05 08 01 10 01 36"))  # payload tag with no value
    assert await raw.closed_by_server()
    stats = await http.get(f"/v1/users/{ADMIN}/devices/dev1/stats", headers=bearer(admin_token))
    assert stats.json()["connected"] is False


async def test_silent_device_is_dropped(server: Roost, registered: None) -> None:
    raw = await RawDevice.connect(server)
    assert await raw.auth() == AUTH_OK
    for _ in range(3):  # keep-alives keep it alive past the timeout
        await asyncio.sleep(0.4)
        raw.writer.write(KEEP_ALIVE_BYTES)
        assert await raw.reader.readexactly(2) == KEEP_ALIVE_BYTES
    started = time.monotonic()
    assert await raw.closed_by_server()
    assert time.monotonic() - started < 3


async def test_second_connection_replaces_the_first(
    server: Roost, registered: None, http: httpx.AsyncClient, admin_token: str
) -> None:
    first = await RawDevice.connect(server)
    assert await first.auth() == AUTH_OK
    second = await RawDevice.connect(server)
    assert await second.auth() == AUTH_OK
    assert await first.closed_by_server()

    call = asyncio.create_task(
        http.get(f"/v2/users/{ADMIN}/devices/dev1/temperature", headers=bearer(admin_token))
    )
    request = await second.next_frame()
    assert isinstance(request, Message)
    assert request.resource == ["temperature"] and request.stream_id != 0
    second.send(Message(stream_id=request.stream_id, signal=Signal.REQUEST_OK, payload=21))
    response = await call
    assert response.json() == {"out": 21}
    second.close()


async def test_unsupported_device_messages_get_error_replies(
    server: Roost, registered: None
) -> None:
    raw = await RawDevice.connect(server)
    assert await raw.auth() == AUTH_OK
    # a bucket write without acknowledgement: no reply, session stays up
    raw.send(Message(signal=Signal.BUCKET_DATA, identifier="temperature_log", payload=23.5))
    # acknowledged endpoint call: an error reply with its stream id
    raw.send(Message(stream_id=77, signal=Signal.CALL_ENDPOINT, identifier="email"))
    assert await raw.next_frame() == Message(stream_id=77, signal=Signal.REQUEST_ERROR)
    # property read (always waits, stream id 0): an error reply with no stream id
    raw.send(Message(signal=Signal.GET_PROPERTY, identifier="config"))
    assert await raw.next_frame() == Message(signal=Signal.REQUEST_ERROR)
    # a stream event nobody asked for, and a reply to nothing: ignored
    raw.send(Message(stream_id=9, signal=Signal.STREAM_EVENT, payload={"out": 1}))
    raw.send(Message(stream_id=999, signal=Signal.REQUEST_OK))
    raw.send(legacy.KEEP_ALIVE)
    assert await raw.next_frame() == legacy.KEEP_ALIVE
    raw.close()


async def test_stats_follow_the_session(
    server: Roost, registered: None, http: httpx.AsyncClient, admin_token: str
) -> None:
    url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    before = (await http.get(url, headers=bearer(admin_token))).json()
    assert before == {
        "connected": False,
        "connected_ts": None,
        "ip_address": None,
        "rx_bytes": 0,
        "tx_bytes": 0,
    }
    raw = await RawDevice.connect(server)
    assert await raw.auth() == AUTH_OK
    raw.writer.write(KEEP_ALIVE_BYTES)
    assert await raw.reader.readexactly(2) == KEEP_ALIVE_BYTES
    stats = (await http.get(url, headers=bearer(admin_token))).json()
    assert stats["connected"] is True
    assert stats["ip_address"] == "127.0.0.1"
    assert abs(stats["connected_ts"] - time.time() * 1000) < 10_000
    auth = legacy.encode(Message(signal=Signal.AUTH, resource=[ADMIN, "dev1", "secret1"]))
    assert stats["rx_bytes"] == len(auth) + len(KEEP_ALIVE_BYTES)
    assert stats["tx_bytes"] == len(AUTH_OK) + len(KEEP_ALIVE_BYTES)
    raw.close()

    async def offline() -> bool:
        return (await http.get(url, headers=bearer(admin_token))).json()["connected"] is False

    await wait_for(offline)
    after = (await http.get(url, headers=bearer(admin_token))).json()
    assert after["tx_bytes"] == stats["tx_bytes"]  # the last session's counters stay readable


async def test_stats_stream_over_sse(
    server: Roost, registered: None, http: httpx.AsyncClient, admin_token: str
) -> None:
    url = f"/v1/users/{ADMIN}/devices/dev1/stats"
    events: list[dict[str, object]] = []
    comments = 0
    raw: RawDevice | None = None
    async with aconnect_sse(http, "GET", url, headers=bearer(admin_token)) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for line in source.response.aiter_lines():
            if line.startswith(":"):
                comments += 1
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == 1:
                    assert events[0]["connected"] is False
                    raw = await RawDevice.connect(server)
                    assert await raw.auth() == AUTH_OK
            if events and events[-1]["connected"] is True and comments:
                break
    assert raw is not None
    raw.close()
    assert server.services is not None
    registry = server.services.registry

    async def unwatched() -> bool:  # the stream released its watcher when the client left
        return registry.watching(DeviceKey(ADMIN, "dev1")) == 0

    await wait_for(unwatched)


async def test_logs_say_connect_and_disconnect_without_secrets(
    server: Roost, registered: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw = await RawDevice.connect(server)
    assert await raw.auth() == AUTH_OK
    raw.close()

    async def logged_disconnect() -> bool:
        return "disconnected" in caplog.text

    await wait_for(logged_disconnect)
    assert "device admin/dev1 connected from 127.0.0.1" in caplog.text
    bad = await RawDevice.connect(server)
    assert await bad.auth("dev1", "not-the-secret") == AUTH_ERROR
    assert "failed to authenticate" in caplog.text
    for secret in ("secret1", "not-the-secret", ADMIN_PASSWORD):
        assert secret not in caplog.text


async def test_a_store_failure_during_auth_closes_the_connection(
    server: Roost, registered: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.services is not None

    async def broken(owner: str, device: str) -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(server.services.store, "get_device", broken)
    raw = await RawDevice.connect(server)
    raw.send(Message(signal=Signal.AUTH, resource=[ADMIN, "dev1", "secret1"]))
    assert await raw.closed_by_server(3)  # not left hanging with its slot taken


async def test_a_connection_keeps_few_short_resource_fields(server: Roost) -> None:
    """Encoded resource paths are kept per connection, bounded in count and size: a caller naming
    endless or huge paths cannot make a connection hold more than a few small fields."""
    assert server.services is not None
    connection = LegacyConnection(server.services.gateway)
    encoded: list[tuple[str, ...]] = []

    def encode(path: tuple[str, ...]) -> bytes:
        encoded.append(path)
        return legacy.resource_field(path)

    for _ in range(3):
        assert connection.resource_field(("temperature",), encode) == legacy.resource_field(
            ("temperature",)
        )
    assert encoded == [("temperature",)]  # encoded once, then kept

    for i in range(KEPT_FIELDS):  # the ninth distinct path starts the memory afresh
        connection.resource_field((f"r{i}",), encode)
    connection.resource_field(("temperature",), encode)
    assert encoded.count(("temperature",)) == 2

    huge = ("x" * 128,) * 3  # a field over KEPT_FIELD_BYTES is never kept
    assert len(legacy.resource_field(huge)) > KEPT_FIELD_BYTES
    connection.resource_field(huge, encode)
    connection.resource_field(huge, encode)
    assert encoded.count(huge) == 2
