"""An acknowledged bucket write survives `kill -9` of the server (issue 11): SDK devices over both
protocols and an HTTP client write points concurrently into a real `roost serve`, each recording
the points it saw acknowledged (the device's confirmation, a 200); the server is killed with
SIGKILL mid-stream, started again on the same data dir, and holds every acknowledged point."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from ports import free_ports
from test_cli import wait_healthy
from test_startup_errors import clean_env

from roost.device import Device
from roost.device.client import ProtocolName
from roost.errors import RoostError

from acked_writes import stored_values
from conftest import login

PASSWORD = "durability-admin-pw"
BUCKET = "/v1/users/admin/buckets/log"
DEVICES: list[tuple[str, ProtocolName]] = [
    *((f"legacy{i}", "legacy") for i in range(3)),
    *((f"iotmp{i}", "iotmp") for i in range(3)),
]
IN_FLIGHT = 4  # writes each device keeps under way
ACKNOWLEDGED_BEFORE_KILL = 600


class Server:
    """`roost serve` on ``data_dir``, on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.http_port, self.device_port, self.iotmp_port = free_ports(3)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roost", "serve", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(
                admin_password=PASSWORD,
                http_port=str(self.http_port),
                device_port=str(self.device_port),
                iotmp_port=str(self.iotmp_port),
            ),
        )
        self.url = f"http://127.0.0.1:{self.http_port}"
        wait_healthy(self.http_port, self.process)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=20)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            output, _ = self.process.communicate(timeout=20)
            assert self.process.returncode == 0, output


async def _login(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"grant_type": "password", "username": "admin", "password": PASSWORD}
    response = await http.post("/oauth/token", data=body)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _setup(http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    for name, _ in DEVICES:
        body = {"device": name, "credentials": "secret1"}
        response = await http.post("/v1/users/admin/devices", json=body, headers=auth)
        assert response.status_code == 200, response.text
    body = {"bucket": "log", "name": "log", "enabled": True, "config": {"source": "write"}}
    response = await http.post("/v1/users/admin/buckets", json=body, headers=auth)
    assert response.status_code == 200, response.text


class Writers:
    """Devices and an HTTP client writing points until told to stop; what was acknowledged."""

    def __init__(self, server: Server, auth: dict[str, str]) -> None:
        self.server, self.auth = server, auth
        self.acknowledged: set[tuple[str, int]] = set()
        self.enough = asyncio.Event()
        self.devices = [
            Device(
                "admin",
                name,
                "secret1",
                port=server.device_port if protocol == "legacy" else server.iotmp_port,
                protocol=protocol,
                reconnect_delay=60,  # no reconnecting to the killed server's ports
                request_timeout=5,
            )
            for name, protocol in DEVICES
        ]

    def _ack(self, writer: str, n: int) -> None:
        self.acknowledged.add((writer, n))
        if len(self.acknowledged) >= ACKNOWLEDGED_BEFORE_KILL:
            self.enough.set()

    async def device_writes(self, device: Device, lane: int) -> None:
        for n in range(lane, 10**9, IN_FLIGHT):
            try:
                confirmed = await device.write_bucket(
                    "log", {"w": device.device, "n": n}, confirm=True
                )
            except RoostError:  # no answer in time: the server is gone
                return
            if not confirmed:  # refused, or the connection ended
                return
            self._ack(device.device, n)

    async def http_writes(self) -> None:
        async with httpx.AsyncClient(base_url=self.server.url, headers=self.auth) as http:
            for n in range(10**9):
                try:
                    response = await http.post(f"{BUCKET}/data", json={"w": "http", "n": n})
                except httpx.TransportError:
                    return
                if response.status_code != 200:
                    return
                self._ack("http", n)


async def test_every_acknowledged_write_survives_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            auth = await _login(http)
            await _setup(http, auth)
        writers = Writers(server, auth)
        for device in writers.devices:
            await device.start()
        for device in writers.devices:
            await device.wait_connected(10)
        async with asyncio.TaskGroup() as group:
            for device in writers.devices:
                for lane in range(IN_FLIGHT):
                    group.create_task(writers.device_writes(device, lane))
            group.create_task(writers.http_writes())
            await writers.enough.wait()
            server.kill()  # mid-stream: every writer has writes under way
        acknowledged = set(writers.acknowledged)
        for device in writers.devices:
            await device.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.process.kill()
    assert {writer for writer, _ in acknowledged} == {"http", *(name for name, _ in DEVICES)}

    again = Server(data_dir)
    try:
        async with httpx.AsyncClient(base_url=again.url) as http:
            stored = await stored_values(http, await login(http, "admin", PASSWORD), BUCKET)
    finally:
        again.stop()
    points = {(value["w"], value["n"]) for value in stored}
    assert len(points) == len(stored)  # no point twice
    assert acknowledged <= points, sorted(acknowledged - points)[:10]
