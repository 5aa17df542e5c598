"""The benchmark suite: servers pinned to core 0, load generators on core 1.

    python -m bench.run [--quick | --smoke] [--rpc-only] [--database-url URL]
        [--write BENCHMARKS.md]

Scenarios, in one run:
- rpc: wrk on ``GET /v2/users/bench/devices/d{i}/temperature`` spread over many simulated devices
  (load generator -> Roost -> device -> back), 64 requests in flight, with a session token; the
  same again with IOTMP devices (``rpc_iotmp_*``) and with a user access token (``rpc_token_*``);
- floor: the same requests to ``bench.floor``, a ``roost serve`` whose bus answers every request
  at once without a device: the same HTTP path and stack with no device round trip.
  ``rpc_ratio`` is rpc's throughput over the floor's (``rpc_token_ratio``: both with the user
  access token);
- rpc cross: ``bench.cross``, two ``roost serve`` nodes sharing a data dir (SQLite) and a
  nats-server: the rpc load entering on node A for devices held by node B (``rpc_cross_*``),
  against the same load entering on B (``rpc_same_node_*``); ``rpc_cross_ratio`` is cross over
  same. Both nodes and nats-server share the server core (more processes than cores: the figure
  is the cost of the NATS hop on one core, see ``bench.cross``). It runs first, with no other
  server up;
- hello: wrk on ``GET /v1/server/healthcheck`` (Starlette's middleware and router, no auth): the
  uvicorn + Starlette hello-world, its own figure (``rpc_per_hello`` is the old ratio);
- devices: devices connect (several simulator processes, each from its own 127.0.0.x source
  address) until the first refused one, against a server allowed ``device_limit`` descriptors,
  or until the plan's time cap; ``devices`` is how many were still connected at the end,
  ``device_bytes`` the server's RSS growth per device; TLS devices are a fixed storm;
- MQTT peer: Mosquitto holding as many idle MQTT connections: its RSS growth per connection
  (``mqtt_bytes``) and ``device_bytes / mqtt_bytes``;
- flood (the full plan): ``bench.flood``, the healthcheck while one device floods;
- bucket reads: ``bench.bucket_reads``, the latest 1,000 points and an hourly mean over one day
  of a bucket of 1,000,000 points (the smoke plan: 20,000) over HTTP (``bucket_*_ms``, medians).
- box: ``bench.box``, the devices one 2-core box holds with ``roost serve --workers 2`` (and
  NATS), each answering a call (``box_devices``; the plan's target: 50,000, quick 4,000, smoke
  100), and both workers' RSS growth per device (``box_device_bytes``);
- ingest: ``bench.ingest``, devices' confirmed bucket writes into a fresh server, points per
  second (``ingest_per_s``) and over a bare sqlite3 insert of the same rows with the same
  durability settings, one commit per row (``ingest_ratio``); the same into PostgreSQL
  (``bench.ingest_pg``, ``ingest_pg_per_s``) when a database is given (``--database-url``,
  default ``ROOST_BENCH_DATABASE_URL``), else ``ingest_pg_skipped`` says why.

The scenarios of a round alternate (hello, floor, rpc, rpc IOTMP, floor with the user token, rpc
with it), each wrk run ``seconds`` long, ``rounds`` times. Throughputs and latencies pool every
request of every round: req/s is all requests over all seconds, p50/p99 are percentiles of all
requests' latencies (wrk's histograms added up). ``rounds`` and ``rpc_p99_rounds`` keep each
round's ratio and p99 to show the spread.

Prints a human summary, then as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench import box, bucket_reads, cross, flood, ingest, ingest_pg
from bench.harness import (
    LOAD_CORE,
    SERVER_CORE,
    Devices,
    Latencies,
    Mosquitto,
    Server,
    append_run,
    children_cpu,
    cpu_seconds,
    descriptor_limit,
    nats_binary,
    rss_bytes,
    seed,
    stolen_seconds,
    wrk,
)


@dataclass(frozen=True)
class Plan:
    name: str
    seconds: int  # per wrk run
    rounds: int
    rpc_devices: int
    device_limit: int  # descriptors the servers (Roost, the floor, Mosquitto) may hold
    device_processes: int  # simulators connecting devices until refused (each its own source)
    connect_cap_s: float  # the devices stop connecting after this long, refused or not
    tls_devices: int
    flood_seconds: float  # 0: no flood scenario
    ingest_seconds: float  # 0: no ingest scenario
    ingest_devices: int
    box: bool = True  # the box scenario (bench.box), its plan of the same name


PLANS = {
    "full": Plan("full", 2, 15, 1000, 65536, 6, 120, 4000, 10, 10, ingest.DEVICES),
    "quick": Plan("quick", 2, 3, 256, 4096, 2, 30, 1000, 0, 3, ingest.DEVICES),
    # bench.flood has its own smoke test
    "smoke": Plan("smoke", 1, 1, 16, 1024, 2, 20, 50, 0, 1, ingest.DEVICES),
}
UNSATURATED = 0.9  # server CPU under which a scenario did not measure the server alone
SLACK = 1.1  # the simulators hold room for 10% more devices than the descriptor limit
SCENARIOS = ("hello", "floor", "rpc", "rpc_iotmp", "floor_token", "rpc_token")


def run(plan: Plan, database_url: str = "") -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "wrk is not installed: run `make bench` (installs it) or apt-get install wrk"
        )
    if nats_binary() is None:
        raise SystemExit(
            "nats-server is not installed: run `make bench` (installs it) "
            "or apt-get install nats-server"
        )
    if plan.device_limit:  # the limit the servers will get (no room held for more)
        plan = replace(plan, device_limit=descriptor_limit(plan.device_limit))
    room = room_for_devices(plan)
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        # first, with no other server up: its three processes take turns on the server core
        (Path(tmp) / "cross").mkdir()
        warm = plan.name != "smoke"
        cross_result = cross.run(
            Path(tmp) / "cross", plan.rpc_devices, plan.seconds, plan.rounds, warm
        )
        data_dir, floor_dir = Path(tmp) / "roost", Path(tmp) / "floor"
        asyncio.run(seed(data_dir, 2 * plan.rpc_devices + room + plan.tls_devices))
        asyncio.run(seed(floor_dir, 2 * plan.rpc_devices))
        server = Server(data_dir, nofile=plan.device_limit or None)
        try:
            floor = Server(floor_dir, module="bench.floor", nofile=plan.device_limit or None)
            try:
                result = measure_rpc(plan, server, floor)
            finally:
                floor.stop()
            result.update(cross_result)
            if room:
                result.update(devices_max(plan, server, 2 * plan.rpc_devices, Path(tmp)))
                first = 2 * plan.rpc_devices + room
                result.update(tls_storm(plan, server, first))
        finally:
            server.stop()
    if plan.box:
        result.update(box.run(box.PLANS[plan.name]))
    result["ingest_per_s"] = None
    result["ingest_ratio"] = None
    result["ingest_pg_per_s"] = None
    if plan.ingest_seconds:
        result.update(ingest.run(plan.ingest_seconds, plan.ingest_devices))
        if database_url:
            pg = ingest_pg.run(plan.ingest_seconds, database_url, plan.ingest_devices)
            result.update(pg)
        else:
            result["ingest_pg_skipped"] = (
                f"no PostgreSQL database given (--database-url or {ingest_pg.ENV})"
            )
    if plan.flood_seconds:
        result["flood"] = flood.run(plan.flood_seconds)
    smoke = plan.name == "smoke"
    result.update(bucket_reads.run(*(bucket_reads.SMOKE if smoke else bucket_reads.FULL)))
    return result


def room_for_devices(plan: Plan) -> int:
    """Devices the simulators hold room for (0: no device scenarios)."""
    if not plan.device_limit:
        return 0
    per = -(-int(plan.device_limit * SLACK) // plan.device_processes)
    return per * plan.device_processes


def check_floor(server: Server, floor: Server, token: str, floor_token: str) -> None:
    """The floor answers a call the way Roost does with a device behind it, without one: the
    same status and body (a floor that was not patched would answer 404)."""
    path = "/v2/users/bench/devices/d0/temperature"
    real = httpx.get(server.url + path, headers={"Authorization": f"Bearer {token}"})
    fake = httpx.get(floor.url + path, headers={"Authorization": f"Bearer {floor_token}"})
    if (real.status_code, real.content) != (fake.status_code, fake.content) or fake.is_error:
        raise RuntimeError(
            f"the floor answers {fake.status_code} {fake.content!r}, "
            f"Roost {real.status_code} {real.content!r}"
        )


def measure_rpc(plan: Plan, server: Server, floor: Server) -> dict[str, Any]:
    pid, floor_pid = server.process.pid, floor.process.pid
    token, floor_token = server.token(), floor.token()
    hello_url = f"{server.url}/v1/server/healthcheck"
    # the same resource on two sets of devices: d0.. speak legacy, the next ones IOTMP
    devices = Devices(server.device_port, plan.rpc_devices, 1)
    iotmp_devices = Devices(
        server.iotmp_port, plan.rpc_devices, 1, first=plan.rpc_devices, options=("iotmp",)
    )
    try:
        check_floor(server, floor, token, floor_token)
        env = {"ROOST_BENCH_TOKEN": token, "ROOST_BENCH_DEVICES": str(plan.rpc_devices)}
        floor_env = {**env, "ROOST_BENCH_TOKEN": floor_token}
        runs: dict[str, tuple[str, dict[str, str]]] = {
            "hello": (hello_url, {}),
            "floor": (floor.url, floor_env),
            "rpc": (server.url, env),
            "rpc_iotmp": (server.url, {**env, "ROOST_BENCH_FIRST": str(plan.rpc_devices)}),
            "floor_token": (floor.url, {**env, "ROOST_BENCH_TOKEN": floor.user_token(floor_token)}),
            "rpc_token": (server.url, {**env, "ROOST_BENCH_TOKEN": server.user_token(token)}),
        }
        # warm-up: every scenario in the full plan; the floor and rpc in the quick one
        warm = {"full": SCENARIOS, "quick": ("floor", "rpc")}.get(plan.name, ())
        for name in warm:
            wrk(runs[name][0], 1, runs[name][1])
        pooled = {name: Latencies() for name in SCENARIOS}
        rounds: list[dict[str, float]] = []
        for _ in range(plan.rounds):
            stolen0 = stolen_seconds(SERVER_CORE)
            this: dict[str, Latencies] = {}
            cpu: dict[str, tuple[float, float, float]] = {}
            for name, (url, scenario_env) in runs.items():
                target = floor_pid if name.startswith("floor") else pid
                before = (cpu_seconds(target), children_cpu(), devices.cpu_seconds())
                this[name] = wrk(url, plan.seconds, scenario_env)
                after = (cpu_seconds(target), children_cpu(), devices.cpu_seconds())
                used = [(b - a) / plan.seconds for a, b in zip(before, after, strict=True)]
                cpu[name] = (used[0], used[1], used[2])
                pooled[name].add(this[name])
            stolen = stolen_seconds(SERVER_CORE) - stolen0
            rounds.append(
                {
                    "ratio": this["rpc"].per_s / this["floor"].per_s,
                    "rpc_p99_ms": this["rpc"].percentile_ms(99),
                    "stolen": stolen / (len(SCENARIOS) * plan.seconds),
                    "hello_server_cpu": cpu["hello"][0],
                    "hello_wrk_cpu": cpu["hello"][1],
                    "floor_server_cpu": cpu["floor"][0],
                    "floor_wrk_cpu": cpu["floor"][1],
                    "rpc_server_cpu": cpu["rpc"][0],
                    "rpc_wrk_cpu": cpu["rpc"][1],
                    "rpc_devices_cpu": cpu["rpc"][2],
                }
            )
    finally:
        devices.stop()
        iotmp_devices.stop()
    rpc, floor_run = pooled["rpc"], pooled["floor"]
    result: dict[str, Any] = {
        "plan": plan.name,
        "rounds": [round(r["ratio"], 3) for r in rounds],
        "rpc_p99_rounds": [round(r["rpc_p99_ms"], 2) for r in rounds],
        "stolen_rounds": [round(r["stolen"], 3) for r in rounds],
        "hello_per_s": round(pooled["hello"].per_s),
        "floor_per_s": round(floor_run.per_s),
        "floor_p99_ms": round(floor_run.percentile_ms(99), 2),
        "rpc_per_s": round(rpc.per_s),
        "rpc_requests": rpc.requests,
        "rpc_p50_ms": round(rpc.percentile_ms(50), 2),
        "rpc_p99_ms": round(rpc.percentile_ms(99), 2),
        "rpc_ratio": round(rpc.per_s / floor_run.per_s, 3),
        "rpc_per_hello": round(rpc.per_s / pooled["hello"].per_s, 3),
        "rpc_iotmp_per_s": round(pooled["rpc_iotmp"].per_s),
        "rpc_iotmp_p99_ms": round(pooled["rpc_iotmp"].percentile_ms(99), 2),
        "rpc_iotmp_ratio": round(pooled["rpc_iotmp"].per_s / floor_run.per_s, 3),
        "floor_token_per_s": round(pooled["floor_token"].per_s),
        "rpc_token_per_s": round(pooled["rpc_token"].per_s),
        "rpc_token_ratio": round(pooled["rpc_token"].per_s / pooled["floor_token"].per_s, 3),
    }
    for key in (
        "hello_server_cpu",
        "hello_wrk_cpu",
        "floor_server_cpu",
        "floor_wrk_cpu",
        "rpc_server_cpu",
        "rpc_wrk_cpu",
        "rpc_devices_cpu",
    ):
        result[key] = round(statistics.median(r[key] for r in rounds), 2)
    result["server_core_stolen"] = round(statistics.median(r["stolen"] for r in rounds), 3)
    return result


def devices_max(plan: Plan, server: Server, first: int, workdir: Path) -> dict[str, Any]:
    """Devices connect until the first refused one (or the time cap); then Mosquitto holds as
    many idle MQTT connections. Bytes are RSS growth over the count still held at the end."""
    time.sleep(0.5)
    rss0 = rss_bytes(server.process.pid)
    room = room_for_devices(plan)
    devices = Devices(
        server.device_port,
        room,
        plan.device_processes,
        first=first,
        until_refused=True,
        deadline=plan.connect_cap_s,
        source=10,
    )
    try:
        time.sleep(1)
        grown = rss_bytes(server.process.pid) - rss0
    finally:
        held = devices.stop()
    if not held:
        raise RuntimeError("no device got in")
    if devices.count >= room:
        stopped_by = f"the simulators' room ({room})"
    elif devices.seconds >= plan.connect_cap_s:
        stopped_by = f"the time cap ({plan.connect_cap_s:g} s)"
    else:
        stopped_by = "the first refusal"
    httpx.get(f"{server.url}/v1/server/healthcheck").raise_for_status()  # still serving
    result: dict[str, Any] = {
        "devices": held,
        "devices_reached": devices.count,
        "devices_fd_limit": server.nofile,
        "devices_stopped_by": stopped_by,
        "connect_s": round(devices.seconds, 2),
        "connect_per_s": round(devices.count / devices.seconds),
        "device_bytes": round(grown / held),
    }
    result.update(mqtt_peer(plan, held, workdir, server.nofile))
    result["device_mqtt_ratio"] = round(result["device_bytes"] / result["mqtt_bytes"], 2)
    return result


def mqtt_peer(plan: Plan, count: int, workdir: Path, nofile: int) -> dict[str, Any]:
    """Mosquitto, with Roost's descriptor limit, holding ``count`` idle MQTT connections."""
    broker = Mosquitto(workdir, nofile)
    try:
        time.sleep(0.5)
        rss0 = rss_bytes(broker.process.pid)
        clients = Devices(broker.port, count, plan.device_processes, options=("mqtt",), source=20)
        try:
            time.sleep(1)
            grown = rss_bytes(broker.process.pid) - rss0
        finally:
            held = clients.stop()
    finally:
        broker.stop()
    if held != count:
        raise RuntimeError(f"Mosquitto held {held} of {count} connections")
    return {
        "mqtt_connections": count,
        "mqtt_connect_s": round(clients.seconds, 2),
        "mqtt_bytes": round(grown / count),
    }


def tls_storm(plan: Plan, server: Server, first: int) -> dict[str, Any]:
    """``tls_devices`` TLS devices connecting from cold, all at once: the seconds until all are
    authenticated, and the server's RSS growth per device."""
    if not plan.tls_devices:
        return {}
    time.sleep(0.5)
    rss0 = rss_bytes(server.process.pid)
    devices = Devices(
        server.tls_port,
        plan.tls_devices,
        plan.device_processes,
        first=first,
        options=("tls",),
        source=40,
    )
    try:
        time.sleep(1)
        grown = rss_bytes(server.process.pid) - rss0
    finally:
        devices.stop()
    return {
        "tls_devices": plan.tls_devices,
        "tls_connect_s": round(devices.seconds, 2),
        "device_tls_bytes": round(grown / plan.tls_devices),
    }


def summary(result: dict[str, Any]) -> str:
    rounds = len(result["rounds"])
    lines = [
        f"hello        {result['hello_per_s']:>8} req/s  (the Starlette healthcheck on the same "
        f"server; server CPU {result['hello_server_cpu']})",
        f"floor        {result['floor_per_s']:>8} req/s  p99 {result['floor_p99_ms']} ms  (the "
        f"same calls answered at once, no device: bench.floor; server CPU "
        f"{result['floor_server_cpu']}, wrk CPU {result['floor_wrk_cpu']})",
        f"rpc          {result['rpc_per_s']:>8} req/s  p50 {result['rpc_p50_ms']} ms  "
        f"p99 {result['rpc_p99_ms']} ms  ratio {result['rpc_ratio']}  (to the floor; "
        f"{result['rpc_requests']} requests pooled over {rounds} rounds; to hello "
        f"{result['rpc_per_hello']}; server CPU {result['rpc_server_cpu']}; hypervisor steal "
        f"on the server core {result['server_core_stolen']})",
        f"rpc IOTMP    {result['rpc_iotmp_per_s']:>8} req/s  p99 {result['rpc_iotmp_p99_ms']} ms  "
        f"ratio {result['rpc_iotmp_ratio']}",
        f"rpc token    {result['rpc_token_per_s']:>8} req/s  ratio {result['rpc_token_ratio']}  "
        f"(a user access token instead of a session; floor {result['floor_token_per_s']} req/s "
        "with it)",
    ]
    if "rpc_cross_per_s" in result:
        lines.append(cross.summary(result))
    if result["floor_server_cpu"] < UNSATURATED:
        lines.append(
            "  (the floor's server did not run all the time: another process on its core, or a "
            "load core that could not send faster; the floor is then low, the ratios to it high)"
        )
    if "devices" in result:
        lines += [
            f"devices      {result['devices']:>8} held, {result['device_bytes']} bytes each "
            f"(connected until {result['devices_stopped_by']}, {result['devices_reached']} in "
            f"{result['connect_s']} s; server descriptor limit {result['devices_fd_limit']})",
            f"MQTT peer    {result['mqtt_connections']:>8} idle connections to Mosquitto, "
            f"{result['mqtt_bytes']} bytes each; device_bytes / mqtt_bytes "
            f"{result['device_mqtt_ratio']}",
        ]
    if "tls_devices" in result:
        lines.append(
            f"TLS          {result['tls_devices']:>8} connected in {result['tls_connect_s']} s, "
            f"{result['device_tls_bytes']} bytes each"
        )
    if "box_devices" in result:
        lines.append(box.summary(result))
    if result.get("ingest_per_s") is not None:
        lines.append(ingest.summary(result))
    if result.get("ingest_pg_per_s") is not None:
        lines.append(ingest_pg.summary(result))
    elif "ingest_pg_skipped" in result:
        lines.append(f"ingest PG    skipped: {result['ingest_pg_skipped']}")
    if "flood" in result:
        lines.append(flood.summary(result["flood"]))
    if "bucket_latest_ms" in result:
        lines.append(bucket_reads.summary(result))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="same scenarios, under a minute")
    size.add_argument("--smoke", action="store_true", help="seconds; keeps the harness honest")
    parser.add_argument("--rpc-only", action="store_true", help="hello and rpc rounds only")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(ingest_pg.ENV, ""),
        help=f"PostgreSQL for the ingest_pg scenario (default ${ingest_pg.ENV}; none: skipped)",
    )
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    plan = PLANS["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.rpc_only:
        plan = replace(
            plan, device_limit=0, tls_devices=0, flood_seconds=0, ingest_seconds=0, box=False
        )
    result = run(plan, args.database_url)
    print(summary(result))
    if args.write:
        standard = {"full": "make bench", "quick": "make bench-quick"}.get(plan.name)
        hidden = ("--write", str(args.write), "--database-url", args.database_url)
        options = [a for a in sys.argv[1:] if a not in hidden]
        command = (
            standard
            if standard and not args.rpc_only
            else " ".join(["python -m bench.run", *options])
        )
        box_note = (
            " (the box's workers and nats-server not pinned: the box is both cores)"
            if "box_devices" in result
            else ""
        )
        placement = (
            "Roost, the floor, Mosquitto and the cross-node scenario's two nodes and nats-server "
            f"pinned to core {SERVER_CORE}; wrk and the device simulators pinned to core "
            f"{LOAD_CORE}{box_note}."
        )
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
