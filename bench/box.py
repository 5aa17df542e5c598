"""box_devices: the devices one 2-core box holds with ``roost serve --workers 2`` (issue 13, 5).

    python -m bench.box [--quick | --smoke] [--devices N] [--workers N] [--nofile N]
                        [--write BENCHMARKS.md]

A nats-server of its own on a free loopback port, and ``roost serve --workers 2`` on the data
dir's SQLite (both workers share it, and every port with SO_REUSEPORT), each process allowed
``NOFILE`` descriptors where the machine lets a child raise its hard limit (CAP_SYS_RESOURCE),
else the hard limit it has (``box_fd_limit``). Neither is pinned: the workers are the box's two
cores. Then:

- connect: device simulators (``bench.devsim``, pinned to the load core, each from its own
  127.0.0.x source address and holding at most PER_SIMULATOR) connect legacy devices d0.. until
  the plan's ``devices`` are in, or until the first one refused RETRIES more times (a refused
  device tries new connections, which the kernel may give the other worker), or the time cap;
- call: one process on the load core keeping CALLERS keep-alive HTTP connections (the kernel
  spreads them over the workers) calls EVERY device of the plan once, connected or not,
  ``GET /v2/users/bench/devices/d{i}/temperature``: one not connected answers 404 ("offline"),
  a call reaching the worker that does not hold the device crosses NATS;
- ``box_devices``: the calls answered with the simulators' value, less the devices no longer
  connected at the end (none, in a good run): devices connected AND answering.

Memory: ``box_device_bytes`` is the workers' RSS growth (from before the devices to after every
call) over ``box_devices`` (``box_device_bytes_connected``: before the calls, over the devices
connected); ``box_nats_bytes`` the nats-server's the same way. Prints a human summary, then as its
LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench.devsim import VALUE
from bench.harness import (
    LOAD_CORE,
    ROOT,
    USER,
    Devices,
    NatsServer,
    append_run,
    cpu_seconds,
    descriptor_limit,
    free_ports,
    limited,
    rss_bytes,
    seed,
    stop_process,
)

NOFILE = 65536  # descriptors per process: the supervisor, each worker and the nats-server
PER_SIMULATOR = 12_500  # devices one simulator holds (its descriptor limit is 20,000)
CALLERS = 64  # HTTP connections calling at once
RETRIES = 20  # new connections a refused device tries (the kernel may send it to another worker)
NAME = re.compile(rb"\bd\d+\b")  # a device's name in an error message
SOURCE = 60  # the simulators' source addresses: 127.0.0.60 on (run.py's scenarios use 10..59)


@dataclass(frozen=True)
class Plan:
    name: str
    devices: int  # the target
    connect_cap_s: float  # the simulators open no new connection after this long
    nofile: int = NOFILE  # descriptors asked for each process (the machine may allow fewer)
    workers: int = 2


PLANS = {
    "full": Plan("full", 50_000, 300),
    "quick": Plan("quick", 4_000, 60),
    "smoke": Plan("smoke", 100, 30),
}


class Box:
    """``roost serve --workers N`` on ``data_dir`` with the bus at ``nats_url``."""

    def __init__(self, data_dir: Path, nats_url: str, nofile: int, workers: int) -> None:
        http, device, iotmp = free_ports(3)
        self.http_port, self.device_port = http, device
        self.url = f"http://127.0.0.1:{http}"
        self.nofile = nofile
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "roost.cli", "--data-dir", str(data_dir)),
                *("--http-port", str(http), "--device-port", str(device)),
                *("--iotmp-port", str(iotmp), "--log-level", os.environ.get("BOX_LOG", "WARNING")),
                *("serve", "--workers", str(workers)),
            ],
            env={
                **os.environ,
                "ROOST_ADMIN_PASSWORD": "bench-admin-password",
                "ROOST_NATS_URL": nats_url,
            },
            cwd=ROOT.parent,
            preexec_fn=limited(nofile),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"roost exited at start (status {self.process.returncode})")
            self.workers = worker_pids(self.process.pid)
            if len(self.workers) == workers and self.answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"roost serve --workers {workers} did not answer within 60 s")

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/server/healthcheck").status_code == 200
        except httpx.TransportError:
            return False

    def token(self) -> str:
        response = httpx.post(
            f"{self.url}/oauth/token",
            data={"grant_type": "password", "username": USER, "password": "bench-password"},
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def rss(self) -> int:
        return sum(rss_bytes(pid) for pid in self.workers)

    def stop(self) -> None:
        stop_process(self.process, 60)


def worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's spawned children that run a node)."""
    pids = []
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children")
    with contextlib.suppress(OSError):
        for pid in map(int, children.read_text().split()):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"spawn_main" in cmdline:  # not the resource tracker
                    pids.append(pid)
    return pids


def held_by(port: int, pids: list[int]) -> list[int]:
    """How many established connections to ``port`` each of ``pids`` holds (ss's count)."""
    listing = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    owners = Counter(int(pid) for pid in re.findall(r"pid=(\d+)", listing))
    return [owners[pid] for pid in pids]


def run(plan: Plan) -> dict[str, Any]:
    nofile = descriptor_limit(plan.nofile)
    simulators = -(-plan.devices // PER_SIMULATOR)
    with tempfile.TemporaryDirectory(prefix="roost-box-") as tmp:
        data_dir = Path(tmp) / "roost"
        asyncio.run(seed(data_dir, plan.devices))
        nats = NatsServer(Path(tmp), nofile=nofile)
        try:
            box = Box(data_dir, nats.url, nofile, plan.workers)
            try:
                result = measure(plan, box, nats, simulators)
            finally:
                box.stop()
        finally:
            nats.stop()
    return result


def measure(plan: Plan, box: Box, nats: NatsServer, simulators: int) -> dict[str, Any]:
    token = box.token()
    time.sleep(0.5)
    rss0, nats0 = box.rss(), rss_bytes(nats.process.pid)
    devices = Devices(
        box.device_port,
        plan.devices,
        simulators,
        until_refused=True,
        options=(f"retries={RETRIES}",),
        deadline=plan.connect_cap_s,
        source=SOURCE,
    )
    try:
        per_worker = held_by(box.device_port, box.workers)
        time.sleep(1)
        connected_rss = box.rss() - rss0
        cpu0 = [cpu_seconds(pid) for pid in box.workers]
        calls = call(box.http_port, token, plan.devices)
        call_cpu = [cpu_seconds(pid) - c for pid, c in zip(box.workers, cpu0, strict=True)]
        time.sleep(1)
        grown, nats_grown = box.rss() - rss0, rss_bytes(nats.process.pid) - nats0
    finally:
        held = devices.stop()
    if devices.count >= plan.devices:
        stopped_by = "the target"
    elif devices.seconds >= plan.connect_cap_s:
        stopped_by = f"the time cap ({plan.connect_cap_s:g} s)"
    else:
        stopped_by = "the first refusal"
    # answered, less those that may have answered and then gone (none when all were held)
    answering = calls["ok"] - (devices.count - held)
    if answering <= 0:
        raise RuntimeError(f"no device connected and answering: {calls}")
    return {
        "box_devices": answering,
        "box_devices_target": plan.devices,
        "box_devices_reached": devices.count,
        "box_devices_held": held,
        "box_devices_stopped_by": stopped_by,
        "box_devices_per_worker": per_worker,
        "box_workers": plan.workers,
        "box_fd_limit": box.nofile,
        "box_simulators": simulators,
        "box_connect_s": round(devices.seconds, 2),
        "box_connect_per_s": round(devices.count / devices.seconds),
        "box_calls": calls["calls"],
        "box_calls_ok": calls["ok"],
        "box_calls_offline": calls["offline"],
        "box_call_failures": calls["failures"],
        "box_calls_s": calls["seconds"],
        "box_calls_per_s": round(calls["calls"] / calls["seconds"]),
        "box_calls_worker_cpu_s": [round(c, 2) for c in call_cpu],
        "box_device_bytes": round(grown / answering),
        "box_device_bytes_connected": round(connected_rss / devices.count),
        "box_nats_bytes": round(nats_grown / answering),
        "box_workers_rss_mb": round(box.rss() / 2**20, 1),
    }


def call(port: int, token: str, count: int) -> dict[str, Any]:
    """``caller``, on the load core: one call to each of d0..d{count-1}."""
    command = ["taskset", "-c", LOAD_CORE, sys.executable, "-m", "bench.box", "call"]
    output = subprocess.run(
        [*command, str(port), str(count)],
        env={**os.environ, "ROOST_BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT.parent,
    ).stdout
    figures: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return figures


async def caller(port: int, token: str, count: int) -> dict[str, Any]:
    """Call every device once over CALLERS keep-alive connections; the answers, tallied."""
    pending = iter(range(count))
    failures: Counter[str] = Counter()
    ok = offline = 0
    expected = {"out": VALUE}  # the simulators' answer, as the REST API gives it

    async def connection() -> None:
        nonlocal ok, offline
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in pending:
                request = (
                    f"GET /v2/users/{USER}/devices/d{i}/temperature HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
                )
                writer.write(request.encode())
                try:
                    status, body = await answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    failures[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                if status == 200 and json.loads(body) == expected:
                    ok += 1
                elif status == 404 and b"is not connected" in body:
                    offline += 1
                else:  # grouped by status and message, the device's name left out
                    message = NAME.sub(b"d_", body[:120]).decode(errors="replace")
                    failures[f"{status} {message}"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CALLERS)))
    seconds = time.perf_counter() - started
    return {
        "calls": count,
        "ok": ok,
        "offline": offline,
        "failures": dict(failures),
        "seconds": round(seconds, 2),
    }


async def answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer with a Content-Length: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def summary(result: dict[str, Any]) -> str:
    return (
        f"box          {result['box_devices']:>8} devices connected and answering a call "
        f"(target {result['box_devices_target']}; roost serve --workers {result['box_workers']}, "
        f"SQLite, NATS; {result['box_devices_reached']} connected in {result['box_connect_s']} s "
        f"until {result['box_devices_stopped_by']}, per worker {result['box_devices_per_worker']}, "
        f"{result['box_devices_held']} still held at the end; {result['box_calls']} calls in "
        f"{result['box_calls_s']} s: {result['box_calls_ok']} answered, "
        f"{result['box_calls_offline']} to devices not connected, failures "
        f"{result['box_call_failures'] or 'none'}; per worker descriptor limit "
        f"{result['box_fd_limit']}); {result['box_device_bytes']} bytes per device in the workers "
        f"({result['box_device_bytes_connected']} before the calls), "
        f"{result['box_nats_bytes']} in nats-server"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "call":
        port, count, token = int(sys.argv[2]), int(sys.argv[3]), os.environ["ROOST_BENCH_TOKEN"]
        print(json.dumps(uvloop.run(caller(port, token, count))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.box")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help=f"{PLANS['quick'].devices} devices")
    size.add_argument("--smoke", action="store_true", help=f"{PLANS['smoke'].devices} devices")
    parser.add_argument("--devices", type=int, help="the target (default: the plan's)")
    parser.add_argument("--nofile", type=int, default=NOFILE, help="descriptors per process")
    parser.add_argument("--workers", type=int, default=2, help="roost serve --workers N")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.devices:
        plan = replace(plan, devices=args.devices)
    plan = replace(plan, nofile=args.nofile, workers=args.workers)
    result = run(plan)
    print(summary(result))
    if args.write:
        options = [a for a in sys.argv[1:] if a not in ("--write", str(args.write))]
        placement = (
            "The workers and nats-server not pinned (the box's two cores); the device "
            f"simulators and the caller pinned to core {LOAD_CORE}."
        )
        command = " ".join(["python -m bench.box", *options])
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
