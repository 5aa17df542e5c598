"""One device cannot stall the server (issue 14, item 7).

A device that sends tiny stream frames as fast as it can is read no faster than its allowance of
frames (TCP pushes back: the server stops draining its socket), and closed, with one log line,
once it has kept that up for ``device_flood_seconds``; meanwhile another device's resource call
is answered. Replies to the server's own requests cost a device nothing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from test_bench_smoke import run_smoke
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from roost.app import Roost
from roost.config import Settings
from roost.device import Device
from roost.net.flow import FrameAllowance
from roost.wire import iotmp, legacy
from roost.wire.iotmp import MessageType as MType
from roost.wire.legacy import Message, Signal

from conftest import ADMIN, DeviceFactory, bearer, create_device, make_settings, sdk_device

RATE = 50  # frames per second a device may send unasked, in these tests
FRAME = legacy.encode(Message(stream_id=1, signal=Signal.STREAM_SAMPLE, payload=1))
BLOCK = FRAME * (16384 // len(FRAME))
AUTH_OK = legacy.encode(Message(signal=Signal.REQUEST_OK))


class Flooder:
    """A device in a thread of its own: authenticates, then sends tiny stream frames as fast as
    the server takes them, until it is stopped or the server closes the connection."""

    def __init__(self, port: int, device: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        auth = Message(signal=Signal.AUTH, resource=[ADMIN, device, "secret1"])
        self.sock.sendall(legacy.encode(auth))
        assert self.sock.recv(4) == AUTH_OK
        self.sent = 0
        self.last_progress = time.monotonic()
        self.closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        view = memoryview(BLOCK)
        while not self._stop.is_set():
            try:
                sent = self.sock.send(view[self.sent % len(BLOCK) :])
            except TimeoutError:  # the server is not reading
                continue
            except OSError:
                break
            if not sent:
                break
            self.sent += sent
            self.last_progress = time.monotonic()
        self.closed.set()

    def stalled_for(self) -> float:
        """Seconds since the server last took any of the flood."""
        return time.monotonic() - self.last_progress

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
async def good_device(
    server: Roost, http: httpx.AsyncClient, admin_token: str, connect_device: DeviceFactory
) -> Device:
    await create_device(http, admin_token, "good")
    device = sdk_device(server, "good")
    device.output("value", lambda: 42)
    return await connect_device(device)


@pytest.fixture
async def flooder(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> AsyncIterator[Flooder]:
    await create_device(http, admin_token, "flood")
    flooder = await asyncio.to_thread(Flooder, server.device_port, "flood")
    yield flooder
    await asyncio.to_thread(flooder.stop)


async def call_good(http: httpx.AsyncClient, token: str) -> None:
    response = await http.get(f"/v2/users/{ADMIN}/devices/good/value", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"out": 42}


async def wait_until(check: Callable[[], bool], within: float) -> None:
    """A bounded wait for ``check`` to hold."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s"
        await asyncio.sleep(0.05)


class TestThrottled:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return make_settings(tmp_path / "data", device_frame_rate=RATE, device_flood_seconds=600.0)

    async def test_a_flooding_device_is_read_no_faster_than_its_allowance(
        self,
        http: httpx.AsyncClient,
        admin_token: str,
        good_device: Device,
        flooder: Flooder,
    ) -> None:
        # the server stops draining the flooder's socket: its sends make no progress
        await wait_until(lambda: flooder.stalled_for() > 1.0, within=20)
        await call_good(http, admin_token)
        assert not flooder.closed.is_set()  # slowed down, not (yet) closed
        # what the server took is what it could not help taking (the kernel's buffers), not
        # what the flooder had to send
        taken = flooder.sent
        await asyncio.sleep(0.5)
        assert flooder.sent - taken < len(BLOCK)


class TestClosed:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return make_settings(tmp_path / "data", device_frame_rate=RATE, device_flood_seconds=1.0)

    async def test_a_device_flooding_for_too_long_is_closed_with_one_log_line(
        self,
        http: httpx.AsyncClient,
        admin_token: str,
        good_device: Device,
        flooder: Flooder,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="roost")
        await call_good(http, admin_token)
        await wait_until(flooder.closed.is_set, within=20)
        lines = [r.getMessage() for r in caplog.records if "flooding" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "admin/flood" in lines[0]
        await call_good(http, admin_token)

    async def test_a_device_flooding_over_a_websocket_is_closed(
        self,
        server: Roost,
        http: httpx.AsyncClient,
        admin_token: str,
        good_device: Device,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="roost")
        await create_device(http, admin_token, "wsflood")
        url = f"ws://127.0.0.1:{server.http_port}/iotmp"
        connect_frame = iotmp.Message(MType.CONNECT, 1, None, [ADMIN, "wsflood", "secret1"])
        sample = iotmp.encode(iotmp.Message(MType.STREAM_DATA, 1, None, 1))
        async with connect(url, subprotocols=["iotmp"]) as ws:  # type: ignore[list-item]
            await ws.send(iotmp.encode(connect_frame))
            assert await asyncio.wait_for(ws.recv(), 5) == iotmp.encode(iotmp.Message(MType.OK, 1))
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(20):
                    while True:  # messages of 100 tiny frames each, as fast as they go
                        await ws.send(sample * 100)
        await call_good(http, admin_token)
        lines = [r.getMessage() for r in caplog.records if "flooding" in r.getMessage()]
        assert len(lines) == 1 and "admin/wsflood" in lines[0], lines

    async def test_replies_to_our_requests_cost_a_device_nothing(
        self, http: httpx.AsyncClient, admin_token: str, good_device: Device
    ) -> None:
        # 4 times the allowance's second's worth of replies, at once: were they counted, the
        # device would wait 3 s for its allowance and be closed after 1 s of it
        calls = [call_good(http, admin_token) for _ in range(4 * RATE)]
        await asyncio.gather(*calls)
        assert good_device.is_connected


def test_flood_bench_smoke_run_reports_every_figure() -> None:
    figures = run_smoke("bench.flood", timeout=120)
    for phase in ("quiet", "flood"):
        assert figures[phase]["requests"] > 0
        assert 0 < figures[phase]["p50_ms"] <= figures[phase]["max_ms"]
    assert figures["flooder"]["frames"] > 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_allowance_grows_back_and_a_run_of_waits_is_a_flood() -> None:
    clock = FakeClock()
    allowance = FrameAllowance(100, 3.0, clock)
    allowance.tokens = 0.0
    assert not allowance.refill()
    clock.now += 0.5
    assert allowance.refill() and allowance.tokens == 50
    clock.now += 10
    assert allowance.refill() and allowance.tokens == 100  # a second's worth at most
    # waits that follow each other make one run; past flood_seconds of it, a flood
    allowance.tokens = 0.0
    delays = []
    while (delay := allowance.wait()) is not None:
        delays.append(delay)
        clock.now += delay
        allowance.tokens = 0.0  # the device spent it all again at once
    assert len(delays) >= 3 and clock.now - 110.5 >= 3.0


def test_waits_apart_are_not_a_flood() -> None:
    clock = FakeClock()
    allowance = FrameAllowance(100, 3.0, clock)
    for _ in range(10):
        allowance.tokens = 0.0
        delay = allowance.wait()
        assert delay is not None
        clock.now += delay + 2.0  # then quiet for 2 s
