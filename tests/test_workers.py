"""`roost serve --workers 2` on a real nats-server, on a shared SQLite data dir or on PostgreSQL:
both workers listen on the same ports (SO_REUSEPORT) and hold devices, a call entering one worker
reaches a device held by the other (NATS); SIGTERM to a worker while calls are in flight: every
accepted call is answered, its devices reconnect, the supervisor starts it again (and one killed
with SIGKILL too); SIGTERM to the supervisor stops them all. A node (worker or not) stopping on
SIGTERM answers the calls another node sent to its devices before it closes their sessions. What
cannot work is refused with one line: no nats_url, a port of 0, a port a worker cannot take."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ports import free_port

from roost.device import Device

from conftest import ADMIN, ADMIN_PASSWORD, bearer, create_device, login
from nats_server import NatsServer, nats_server  # noqa: F401
from test_multinode import DEVICE_URL, Node, database, nodes, online  # noqa: F401

DEVICES = 16  # all on one worker of two: one chance in 2**15
SLOW_S = 1.5  # how long the "slow" resource takes to answer
SERVING = re.compile(r"worker (\d+) serving \(pid (\d+)\)")


class Workers:
    """One `roost serve --workers 2` supervisor process, its ports and its log."""

    def __init__(self, data_dir: Path, nats_url: str, work: Path, database_url: str) -> None:
        self.ports = {"http": free_port(), "device": free_port(), "iotmp": free_port()}
        self.log = work / "workers.log"
        env = {
            **os.environ,
            "ROOST_DATA_DIR": str(data_dir),
            "ROOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ROOST_HTTP_PORT": str(self.ports["http"]),
            "ROOST_DEVICE_PORT": str(self.ports["device"]),
            "ROOST_IOTMP_PORT": str(self.ports["iotmp"]),
            "ROOST_NATS_URL": nats_url,
            "ROOST_CALL_TIMEOUT_MS": "5000",
            "ROOST_WORKERS": "2",
            "ROOST_DATABASE_URL": database_url,  # "": SQLite in the shared data dir
        }
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "roost", "serve"], env=env, stdout=log, stderr=log
            )
        self.url = f"http://127.0.0.1:{self.ports['http']}"

    def serving(self) -> dict[int, int]:
        """Worker index -> pid, the latest one the log says serves."""
        return {int(i): int(pid) for i, pid in SERVING.findall(self.log.read_text())}

    async def ready(self) -> None:
        await until(lambda: len(self.serving()) == 2, f"workers did not start: {self.text()}")

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The workers share the data dir's SQLite, or a PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return ""


@pytest.fixture
async def workers(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
    database_url: str,
) -> AsyncIterator[Workers]:
    running = Workers(tmp_path / "data", nats_server.url, tmp_path, database_url)
    try:
        await running.ready()
        yield running
    finally:
        pids = list(running.serving().values())
        running.stop()
        for pid in pids:  # no worker outlives the supervisor
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


async def until(check: object, message: str = "condition not met in time") -> None:
    deadline = time.monotonic() + 15
    while True:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, message
        await asyncio.sleep(0.05)


def connections_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections on local ``port`` each process holds (Linux /proc)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    counts = dict.fromkeys(pids, 0)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            counts[inodes[fields[9]]] += 1
    return counts


def sdk_device(number: int, port: int, entered: list[int], *others: int) -> Device:
    """Device dev<number> on ``port`` (then the ``others``, the SDK's fallbacks)."""
    device = Device(
        user=ADMIN,
        device=f"dev{number}",
        credentials=f"secret{number}",
        port=port,
        reconnect_delay=0.2,
        fallbacks=[("127.0.0.1", other) for other in others],
    )

    async def slow() -> int:
        entered.append(number)
        await asyncio.sleep(SLOW_S)
        return number

    device.output("number", lambda: number)
    device.output("slow", slow)
    return device


async def answered(http: httpx.AsyncClient, token: str, number: int, resource: str) -> object:
    url = f"/v2/users/{ADMIN}/devices/dev{number}/{resource}"
    response = await http.get(url, headers=bearer(token))
    assert response.status_code == 200, (number, response.status_code, response.text)
    return response.json()


async def test_workers_share_the_ports_and_drain_on_sigterm(workers: Workers) -> None:
    pids = workers.serving()
    assert len(set(pids.values())) == 2
    async with httpx.AsyncClient(base_url=workers.url, timeout=15) as http:
        token = await login(http)
        for number in range(DEVICES):
            await create_device(http, token, f"dev{number}", f"secret{number}")
        entered: list[int] = []
        devices = [sdk_device(n, workers.ports["device"], entered) for n in range(DEVICES)]
        for device in devices:
            await device.start()
        try:
            for device in devices:
                await device.wait_connected(10)
            # the kernel spread the devices over both workers' sockets on the one port
            held = connections_by_pid(list(pids.values()), workers.ports["device"])
            assert sum(held.values()) == DEVICES and all(held.values()), held
            # one HTTP connection, so one worker, answers for every device: some are on the other
            async with httpx.AsyncClient(
                base_url=workers.url, timeout=15, limits=httpx.Limits(max_connections=1)
            ) as one:
                for number in range(DEVICES):
                    await until(lambda n=number: _online(one, token, n))
                    assert await answered(one, token, number, "number") == {"out": number}

            # calls in flight on both workers (each device has received its call): SIGTERM one
            calls = [
                asyncio.ensure_future(answered(http, token, n, "slow")) for n in range(DEVICES)
            ]
            await until(lambda: len(entered) == DEVICES or any(c.done() for c in calls))
            assert len(entered) == DEVICES, [c.result() for c in calls if c.done()]
            stopped = pids[1]
            os.kill(stopped, signal.SIGTERM)
            results = await asyncio.gather(*calls)  # none failed: each answered 200
            assert results == [{"out": n} for n in range(DEVICES)]

            # its devices reconnected (to the port: the other worker, or the new one)
            await until(lambda: workers.serving()[1] != stopped, "worker 1 not started again")
            with pytest.raises(ProcessLookupError):
                os.kill(stopped, 0)
            for number in range(DEVICES):
                await until(lambda n=number: _online(http, token, n))
                assert await answered(http, token, number, "number") == {"out": number}

            # a worker that dies is started again; its devices come back too
            crashed = workers.serving()[0]
            os.kill(crashed, signal.SIGKILL)
            await until(lambda: workers.serving()[0] != crashed, "worker 0 not started again")
            assert f"worker 0 (pid {crashed}) ended (exit code -9)" in workers.text()
            for number in range(DEVICES):
                await until(lambda n=number: _online(http, token, n))
                assert await answered(http, token, number, "number") == {"out": number}
        finally:
            for device in devices:
                await device.stop()
    assert workers.stop() == 0  # SIGTERM to the supervisor: every worker drains and ends
    text = workers.text()
    assert "Traceback" not in text, text
    assert text.count("roost[worker 0]: stopped") == 1  # once, at the end
    assert text.count("roost[worker 1]: stopped") == 2  # at its SIGTERM, and at the end


async def _online(http: httpx.AsyncClient, token: str, number: int) -> bool:
    response = await http.get(f"/v1/users/{ADMIN}/devices/dev{number}", headers=bearer(token))
    return response.status_code == 200 and bool(response.json()["connection"]["active"])


async def test_a_stopping_node_answers_the_calls_another_node_sent_its_devices(
    nodes: tuple[Node, Node],  # noqa: F811
) -> None:
    """Node A has no HTTP request of its own in flight when it is told to stop: the call B sent
    to A's device is waited for (drain_sessions) before the session closes."""
    a, b = nodes
    token = await login(a.http)
    await create_device(a.http, token)
    entered: list[int] = []
    device = sdk_device(1, a.device_port, entered, b.device_port)  # dev1, as DEVICE_URL
    await device.start()
    try:
        await device.wait_connected(10)
        await until(lambda: online(b, token))
        call = asyncio.ensure_future(b.http.get(f"{DEVICE_URL}/slow", headers=bearer(token)))
        await until(lambda: entered or call.done())
        a.process.send_signal(signal.SIGTERM)
        response = await call
        assert response.status_code == 200 and response.json() == {"out": 1}, response.text
        assert a.process.wait(20) == 0
        assert "Traceback" not in a.log.read_text()
        await until(lambda: online(b, token))  # reconnected, to B
        response = await b.http.get(f"{DEVICE_URL}/number", headers=bearer(token))
        assert response.status_code == 200 and response.json() == {"out": 1}
        assert device.port == b.device_port
    finally:
        await device.stop()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "set nats_url (ROOST_NATS_URL=nats://"),
        ({"ROOST_NATS_URL": "nats://127.0.0.1:4222", "ROOST_DEVICE_PORT": "0"}, "device_port 0"),
    ],
)
def test_workers_refuse_what_cannot_work(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env.update(settings, ROOST_DATA_DIR=str(tmp_path / "data"), ROOST_WORKERS="2")
    command = [sys.executable, "-m", "roost", "serve"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("roost: setting 'workers' 2:"), done.stderr
    assert message in lines[0]


def test_a_worker_that_cannot_start_stops_them_all_with_its_reason(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: no worker may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
        env.update(
            ROOST_DATA_DIR=str(tmp_path / "data"),
            ROOST_WORKERS="2",
            ROOST_NATS_URL=nats_server.url,
            ROOST_HTTP_PORT=str(port),
            ROOST_DEVICE_PORT=str(free_port()),
            ROOST_IOTMP_PORT=str(free_port()),
            ROOST_LOG_LEVEL="ERROR",
        )
        command = [sys.executable, "-m", "roost", "serve"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-2:] == [
        f"roost: worker 0: http_port {port} is already in use",
        "roost: a worker could not start (its error is above)",
    ], done.stderr
