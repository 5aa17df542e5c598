"""The processes a benchmark runs, and what /proc tells of them: ``roost serve`` (and the floor,
``bench.floor``, and the MQTT peer, Mosquitto) pinned to the server core, device simulators
(``bench.devsim``) and wrk pinned to the load core, and the bench user and devices seeded straight
into the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from roost.auth.keys import PEPPER_FILE, load_or_create_key
from roost.auth.passwords import DeviceCredentials, hash_password
from roost.store import Store
from roost.store.base import Device, User
from roost.store.postgres import PostgresStore
from roost.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent
USER, PASSWORD, CREDENTIALS = "bench", "bench-password", "bench-secret"
SERVER_CORE, LOAD_CORE = "0", "1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all held open while they are chosen)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


async def seed(data_dir: Path, devices: int, database_url: str = "") -> None:
    """Create the bench user and its devices straight in the store (one credentials hash): the
    data dir's SQLite file, or PostgreSQL at ``database_url``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store: Store = (
        PostgresStore(database_url) if database_url else SQLiteStore(data_dir / "roost.db")
    )
    await store.open()
    try:
        now = int(time.time() * 1000)
        await store.create_user(User(USER, hash_password(PASSWORD), "user", now))
        pepper = load_or_create_key(data_dir, PEPPER_FILE)
        credentials_hash = DeviceCredentials(pepper).hash(CREDENTIALS)
        for i in range(devices):
            await store.create_device(
                Device(USER, f"d{i}", "", "", "Generic", credentials_hash, True, now, now, None)
            )
    finally:
        await store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def stolen_seconds(core: str) -> float:
    """Time the hypervisor ran something else while this core wanted to run (``steal``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields[0] == f"cpu{core}":
            return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def descriptor_limit(wanted: int | None) -> int:
    """The descriptor limit a server started now gets: ``wanted`` if a child may have it (past
    the hard limit, that needs CAP_SYS_RESOURCE), else the hard limit children have."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if wanted is None or wanted <= hard:
        return wanted or hard
    probe = f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({wanted}, {wanted}))"
    allowed = subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0
    return wanted if allowed else hard


def limited(nofile: int) -> Callable[[], None]:
    """What a child runs before its program: at most ``nofile`` descriptors."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return apply


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not ended within ``timeout`` seconds: a child
    that hangs at its stop never outlives the benchmark."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


NATS_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server")  # Debian's, off a user's PATH


def nats_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return next((p for p in NATS_PATHS if Path(p).exists()), None)


class NatsServer:
    """nats-server (Debian package ``nats-server``) on a free loopback port, logging to
    ``workdir``; pinned to ``core`` if given, with ``nofile`` descriptors if given."""

    def __init__(self, workdir: Path, core: str | None = None, nofile: int | None = None) -> None:
        binary = nats_binary()
        if binary is None:
            raise SystemExit("nats-server is not installed: run `make bench` (installs it)")
        (self.port,) = free_ports(1)
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = workdir / "nats-server.log"
        pinned = ["taskset", "-c", core] if core is not None else []
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*pinned, binary, "-a", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limited(nofile) if nofile else None,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited at start: {self.log.read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("nats-server did not listen within 10 s")

    def stop(self) -> None:
        stop_process(self.process)


class Server:
    """``python -m <module>`` (``roost.cli``, or ``bench.floor``) serving ``data_dir`` on free
    ports, pinned to the server core, with ``nofile`` descriptors at most (soft and hard) and
    ``env`` added to its environment (``ROOST_NATS_URL``, ``ROOST_DATABASE_URL``)."""

    def __init__(
        self,
        data_dir: Path,
        module: str = "roost.cli",
        nofile: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        ports = free_ports(6)
        self.http_port, self.device_port, self.tls_port, self.iotmp_port = ports[:4]
        self.nofile = descriptor_limit(nofile)
        self.process = subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CORE,
                sys.executable,
                "-m",
                module,
                "--data-dir",
                str(data_dir),
                "--http-port",
                str(self.http_port),
                "--device-port",
                str(self.device_port),
                "--iotmp-port",
                str(self.iotmp_port),
                "--tls-self-signed",
                "--device-tls-port",
                str(self.tls_port),
                "--iotmp-tls-port",
                str(ports[4]),
                "--https-port",
                str(ports[5]),
                "--log-level",
                "WARNING",
                "serve",
            ],
            env={**os.environ, "ROOST_ADMIN_PASSWORD": "bench-admin-password", **(env or {})},
            cwd=ROOT.parent,
            preexec_fn=limited(self.nofile),
        )
        self.url = f"http://127.0.0.1:{self.http_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start (status {self.process.returncode})")
            try:
                if httpx.get(f"{self.url}/v1/server/healthcheck").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not answer within 30 s")

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "password", "username": USER, "password": PASSWORD},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def user_token(self, session: str) -> str:
        """A user access token allowed to call every device's resources, as apps use."""
        response = httpx.post(
            f"{self.url}/v1/users/{USER}/tokens",
            json={"token": "bench_app", "allow": {"Device": {"*": ["AccessDeviceResources"]}}},
            headers={"Authorization": f"Bearer {session}"},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def stop(self) -> None:
        stop_process(self.process)


class Devices:
    """Simulator processes (``bench.devsim``) holding devices d{first}..d{first+count-1} on
    ``port``, on the load core, each process from its own 127.0.0.x source address (x from
    ``source`` on: scenarios apart, so that no address runs out of ports held in TIME_WAIT).
    ``options`` go to the simulator (tls, iotmp, mqtt). With ``until_refused`` each process stops
    opening connections at its first refusal (or after ``deadline`` seconds), and ``count`` is
    how many got in; otherwise all must get in."""

    def __init__(
        self,
        port: int,
        count: int,
        processes: int,
        first: int = 0,
        options: tuple[str, ...] = (),
        until_refused: bool = False,
        deadline: float | None = None,
        source: int = 2,
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        per = -(-count // processes)
        if until_refused:
            options = (*options, "until-refused")
        if deadline is not None:
            options = (*options, f"deadline={deadline}")
        started = time.perf_counter()
        for k in range(processes):
            n = min(per, count - k * per)
            if n <= 0:
                break
            self.procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        LOAD_CORE,
                        sys.executable,
                        "-m",
                        "bench.devsim",
                        "127.0.0.1",
                        str(port),
                        f"127.0.0.{source + k}",
                        USER,
                        "d",
                        str(first + k * per),
                        str(n),
                        CREDENTIALS,
                        *options,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT.parent,
                )
            )
        self.count = 0
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != ("reached" if until_refused else "ready"):
                self.stop()
                raise RuntimeError(f"device simulator failed: {line}")
            self.count += int(line[1])
        self.seconds = time.perf_counter() - started

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def stop(self) -> int:
        """Close every connection; how many were still connected when told to."""
        held = 0
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()
        for proc in self.procs:
            out = proc.stdout.read() if proc.stdout is not None else ""
            proc.wait(60)
            for line in out.splitlines():
                if line.startswith("held "):
                    held += int(line.split()[1])
        return held


class Mosquitto:
    """The MQTT peer: Mosquitto (Debian package ``mosquitto``) on a free loopback port, pinned to
    the server core, anonymous clients allowed, no connection cap beyond ``nofile`` descriptors,
    no persistence, no logging."""

    def __init__(self, workdir: Path, nofile: int) -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
        if binary is None:
            raise SystemExit(
                "mosquitto is not installed: run `make bench` (installs it) "
                "or apt-get install mosquitto"
            )
        (self.port,) = free_ports(1)
        config = workdir / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_connections -1\n"
            "persistence false\n"
            "log_dest none\n"
        )
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, binary, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=limited(nofile),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(f"mosquitto exited at start: {error.decode()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        stop_process(self.process)


WRK_SUMMARY = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m),")
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass
class Latencies:
    """wrk runs pooled: requests, seconds, and every request's latency as a histogram
    (microseconds -> count; wrk's own, with its coordinated-omission correction)."""

    requests: int = 0
    seconds: float = 0.0
    histogram: Counter[int] = field(default_factory=Counter)

    def add(self, other: Latencies) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.histogram.update(other.histogram)

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, p: float) -> float:
        """The smallest latency at or under which ``p`` % of the pooled requests fall."""
        total = sum(self.histogram.values())
        wanted, seen = total * p / 100, 0
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= wanted:
                return value / 1000
        raise ValueError("no latencies")


def wrk(url: str, seconds: int, env: dict[str, str] | None = None) -> Latencies:
    """One wrk run (one thread, 64 connections) with ``rpc.lua`` (a resource call on the next
    device when ``env`` names the devices, else GET ``url``)."""
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c64", f"-d{seconds}s"]
    output = subprocess.run(
        [*command, "-s", str(ROOT / "rpc.lua"), url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    found = WRK_SUMMARY.search(output)
    lines = [line for line in output.splitlines() if line.startswith("latency-us")]
    if found is None or not lines:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    histogram: Counter[int] = Counter()
    for pair in lines[0].split()[1:]:
        value, count = pair.split(":")
        histogram[int(value)] += int(count)
    seconds_taken = float(found.group(2)) * UNITS[found.group(3)]
    return Latencies(int(found.group(1)), seconds_taken, histogram)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def append_run(
    path: Path, command: str, placement: str, shown: str, result: dict[str, Any]
) -> None:
    """One run's section at the end of BENCHMARKS.md (``path``): when, the command, the machine
    and where each process ran (``placement``), the summary lines (``shown``) and the JSON."""
    section = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — `{command}`\n\n"
        f"Machine: {machine()}. {placement}\n\n```\n{shown}\n```\n\n"
        f"```json\n{json.dumps(result)}\n```\n"
    )
    with path.open("a") as fh:
        fh.write(section)
