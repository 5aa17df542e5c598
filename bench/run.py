"""The benchmark suite: one server process pinned to core 0, load generators on core 1.

    python -m bench.run [--quick | --smoke] [--rpc-only] [--write BENCHMARKS.md]

Scenarios, in one run against one server:
- hello: wrk on ``GET /v1/server/healthcheck`` (no auth, no device): the HTTP stack's baseline;
- rpc: wrk on ``GET /v2/users/bench/devices/d{i}/temperature`` spread over many simulated devices
  (load generator -> Roost -> device -> back), 64 requests in flight, with a session token; the
  same again with IOTMP devices (``rpc_iotmp_*``) and with a user access token (``rpc_token_*``);
- devices: a connection storm of N devices from several simulator processes spread over
  127.0.0.x source addresses; the time until all are authenticated, and the server's RSS growth
  per connected device.

Prints a human summary, then as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.harness import (
    LOAD_CORE,
    ROOT,
    SERVER_CORE,
    Devices,
    Server,
    children_cpu,
    cpu_seconds,
    rss_bytes,
    seed,
    stolen_seconds,
    wrk,
)


@dataclass(frozen=True)
class Plan:
    name: str
    seconds: int  # per wrk run
    rounds: int  # hello/rpc pairs
    rpc_devices: int
    storm_devices: int
    storm_processes: int
    tls_devices: int


PLANS = {
    "full": Plan("full", 2, 15, 1000, 19000, 4, 4000),
    "quick": Plan("quick", 2, 4, 256, 4000, 2, 1000),
    "smoke": Plan("smoke", 1, 1, 16, 200, 2, 50),
}


# The figures of each hello/rpc round, reported as medians, with their decimals.
ROUND_FIGURES = {
    "hello_per_s": 0,
    "hello_server_cpu": 2,
    "hello_client_cpu": 2,
    "rpc_per_s": 0,
    "rpc_p50_ms": 2,
    "rpc_p99_ms": 2,
    "rpc_ratio": 3,
    "rpc_server_cpu": 2,
    "rpc_wrk_cpu": 2,
    "rpc_devices_cpu": 2,
    "rpc_iotmp_per_s": 0,
    "rpc_iotmp_p99_ms": 2,
    "rpc_iotmp_ratio": 3,
    "rpc_token_per_s": 0,
    "rpc_token_ratio": 3,
    "server_core_stolen": 3,  # share of the server core's time the hypervisor took
}


def run(plan: Plan) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed: run `make bench` (installs it) or apt-get install wrk"
        )
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        data_dir = Path(tmp)
        asyncio.run(seed(data_dir, 2 * plan.rpc_devices + plan.storm_devices + plan.tls_devices))
        server = Server(data_dir)
        try:
            return measure(plan, server)
        finally:
            server.stop()


def measure(plan: Plan, server: Server) -> dict[str, Any]:
    pid = server.process.pid
    result: dict[str, Any] = {"plan": plan.name}
    token = server.token()

    hello_url = f"{server.url}/v1/server/healthcheck"
    # the same resource on two sets of devices: d0.. speak legacy, the next ones IOTMP
    devices = Devices(server, plan.rpc_devices, 1)
    iotmp_devices = Devices(server, plan.rpc_devices, 1, first=plan.rpc_devices, iotmp=True)
    try:
        env = {"ROOST_BENCH_TOKEN": token, "ROOST_BENCH_DEVICES": str(plan.rpc_devices)}
        iotmp_env = {**env, "ROOST_BENCH_FIRST": str(plan.rpc_devices)}
        token_env = {**env, "ROOST_BENCH_TOKEN": server.user_token(token)}
        wrk(hello_url, 1)  # warm-up
        wrk(server.url, 1, ROOT / "rpc.lua", env)
        wrk(server.url, 1, ROOT / "rpc.lua", iotmp_env)
        # This machine is noisy: hello and rpc alternate in short runs, each ratio is taken
        # within its round, and every figure reported is the median over the rounds.
        rounds = []
        for _ in range(plan.rounds):
            stolen0 = stolen_seconds(SERVER_CORE)
            cpu0, client0 = cpu_seconds(pid), children_cpu()
            hello = wrk(hello_url, plan.seconds)
            hello_cpu = (cpu_seconds(pid) - cpu0, children_cpu() - client0)
            cpu0, client0, sim0 = cpu_seconds(pid), children_cpu(), devices.cpu_seconds()
            rpc = wrk(server.url, plan.seconds, ROOT / "rpc.lua", env)
            rpc_cpu = (
                cpu_seconds(pid) - cpu0,
                children_cpu() - client0,
                devices.cpu_seconds() - sim0,
            )
            rpc_iotmp = wrk(server.url, plan.seconds, ROOT / "rpc.lua", iotmp_env)
            rpc_token = wrk(server.url, plan.seconds, ROOT / "rpc.lua", token_env)
            stolen = (stolen_seconds(SERVER_CORE) - stolen0) / (4 * plan.seconds)
            rounds.append(
                {
                    "rpc_ratio": rpc["per_s"] / hello["per_s"],
                    "hello_per_s": hello["per_s"],
                    "hello_server_cpu": hello_cpu[0] / plan.seconds,
                    "hello_client_cpu": hello_cpu[1] / plan.seconds,
                    "rpc_per_s": rpc["per_s"],
                    "rpc_p50_ms": rpc["p50_ms"],
                    "rpc_p99_ms": rpc["p99_ms"],
                    "rpc_server_cpu": rpc_cpu[0] / plan.seconds,
                    "rpc_wrk_cpu": rpc_cpu[1] / plan.seconds,
                    "rpc_devices_cpu": rpc_cpu[2] / plan.seconds,
                    "rpc_iotmp_per_s": rpc_iotmp["per_s"],
                    "rpc_iotmp_p99_ms": rpc_iotmp["p99_ms"],
                    "rpc_iotmp_ratio": rpc_iotmp["per_s"] / hello["per_s"],
                    "rpc_token_per_s": rpc_token["per_s"],
                    "rpc_token_ratio": rpc_token["per_s"] / hello["per_s"],
                    "server_core_stolen": stolen,
                }
            )
    finally:
        devices.stop()
        iotmp_devices.stop()
    result["rounds"] = [round(r["rpc_ratio"], 3) for r in rounds]
    result["rpc_p99_rounds"] = [round(r["rpc_p99_ms"], 2) for r in rounds]
    result["stolen_rounds"] = [round(r["server_core_stolen"], 3) for r in rounds]
    for key, digits in ROUND_FIGURES.items():
        result[key] = round(statistics.median(r[key] for r in rounds), digits)
        if digits == 0:
            result[key] = int(result[key])

    first = 2 * plan.rpc_devices  # after the legacy and IOTMP rpc devices
    plain = storm(server, plan.storm_devices, plan.storm_processes, first, tls=False)
    result["devices"], result["connect_s"], result["device_bytes"] = plain
    first += plan.storm_devices
    secure = storm(server, plan.tls_devices, plan.storm_processes, first, tls=True)
    result["tls_devices"], result["tls_connect_s"], result["device_tls_bytes"] = secure
    result["ingest_per_s"] = None  # buckets do not exist yet
    result["ingest_ratio"] = None
    return result


def storm(
    server: Server, count: int, processes: int, first: int, tls: bool
) -> tuple[int | None, float | None, int | None]:
    """``count`` devices connecting from cold, all at once: (count, seconds until all are
    authenticated, the server's RSS growth per device); Nones when ``count`` is 0."""
    if not count:
        return None, None, None
    time.sleep(1)
    rss0 = rss_bytes(server.process.pid)
    devices = Devices(server, count, processes, first=first, tls=tls)
    try:
        time.sleep(1)
        grown = rss_bytes(server.process.pid) - rss0
        return count, round(devices.seconds, 2), round(grown / count)
    finally:
        devices.stop()


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def summary(result: dict[str, Any]) -> str:
    lines = [
        f"hello      {result['hello_per_s']:>8} req/s  (server CPU {result['hello_server_cpu']})",
        f"rpc        {result['rpc_per_s']:>8} req/s  p50 {result['rpc_p50_ms']} ms  "
        f"p99 {result['rpc_p99_ms']} ms  ratio {result['rpc_ratio']}  "
        f"(server CPU {result['rpc_server_cpu']}; medians of {len(result['rounds'])} rounds; "
        f"hypervisor steal on the server core {result['server_core_stolen']})",
        f"rpc IOTMP  {result['rpc_iotmp_per_s']:>8} req/s  p99 {result['rpc_iotmp_p99_ms']} ms  "
        f"ratio {result['rpc_iotmp_ratio']}",
        f"rpc token  {result['rpc_token_per_s']:>8} req/s  ratio {result['rpc_token_ratio']}  "
        "(a user access token instead of a session)",
    ]
    if result["devices"] is not None:
        lines.append(
            f"devices    {result['devices']:>8} connected in {result['connect_s']} s, "
            f"{result['device_bytes']} bytes each"
        )
    if result["tls_devices"] is not None:
        lines.append(
            f"TLS        {result['tls_devices']:>8} connected in {result['tls_connect_s']} s, "
            f"{result['device_tls_bytes']} bytes each"
        )
    return "\n".join(lines)


def write_markdown(path: Path, command: str, result: dict[str, Any]) -> None:
    section = (
        f"\n## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — `{command}`\n\n"
        f"Machine: {machine()}. Server pinned to core {SERVER_CORE}; wrk and the device "
        f"simulators pinned to core {LOAD_CORE}.\n\n```\n{summary(result)}\n```\n\n"
        f"```json\n{json.dumps(result)}\n```\n"
    )
    with path.open("a") as fh:
        fh.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="same scenarios, under a minute")
    size.add_argument("--smoke", action="store_true", help="seconds; keeps the harness honest")
    parser.add_argument("--rpc-only", action="store_true", help="hello and rpc rounds only")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.rpc_only:
        plan = replace(plan, storm_devices=0, tls_devices=0)
    result = run(plan)
    print(summary(result))
    if args.write:
        standard = {"full": "make bench", "quick": "make bench-quick"}.get(plan.name)
        options = [a for a in sys.argv[1:] if a != "--write" and a != str(args.write)]
        command = (
            standard
            if standard and not args.rpc_only
            else " ".join(["python -m bench.run", *options])
        )
        write_markdown(args.write, command, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
