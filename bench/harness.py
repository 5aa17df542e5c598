"""The processes a benchmark runs, and what /proc tells of them: one ``roost serve`` pinned to the
server core, device simulators (``bench.devsim``) and wrk pinned to the load core, and the bench
user and devices seeded straight into the store.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from roost.auth.keys import PEPPER_FILE, load_or_create_key
from roost.auth.passwords import DeviceCredentials, hash_password
from roost.store.base import Device, User
from roost.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parent
USER, PASSWORD, CREDENTIALS = "bench", "bench-password", "bench-secret"
SERVER_CORE, LOAD_CORE = "0", "1"


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (all held open while they are chosen)."""
    import socket

    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


async def seed(data_dir: Path, devices: int) -> None:
    """Create the bench user and its devices straight in the store (one credentials hash)."""
    store = SQLiteStore(data_dir / "roost.db")
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


class Server:
    def __init__(self, data_dir: Path) -> None:
        ports = free_ports(6)
        self.http_port, self.device_port, self.tls_port, self.iotmp_port = ports[:4]
        self.process = subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CORE,
                sys.executable,
                "-m",
                "roost.cli",
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
            env={**os.environ, "ROOST_ADMIN_PASSWORD": "bench-admin-password"},
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
        self.process.terminate()
        self.process.wait(30)


class Devices:
    """Simulator processes holding devices d{first}..d{first+count-1}, on the load core."""

    def __init__(
        self,
        server: Server,
        count: int,
        processes: int,
        first: int = 0,
        tls: bool = False,
        iotmp: bool = False,
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        per = -(-count // processes)
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
                        str(
                            server.iotmp_port
                            if iotmp
                            else server.tls_port
                            if tls
                            else server.device_port
                        ),
                        f"127.0.0.{2 + k}",
                        USER,
                        "d",
                        str(first + k * per),
                        str(n),
                        CREDENTIALS,
                        *(["tls"] if tls else []),
                        *(["iotmp"] if iotmp else []),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT.parent,
                )
            )
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().split()
            if not line or line[0] != "ready":
                raise RuntimeError(f"device simulator failed: {line}")
        self.seconds = time.perf_counter() - started

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(30)


WRK_LATENCY = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(
    url: str, seconds: int, script: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, float]:
    command = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    latency = {p: float(v) * scale[u] for p, v, u in WRK_LATENCY.findall(output)}
    return {"per_s": per_s, "p50_ms": latency["50"], "p99_ms": latency["99"]}
