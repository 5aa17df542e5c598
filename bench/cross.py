"""Cross-node resource calls: wrk entering on one node for devices held by another.

Two ``roost serve`` nodes, A and B, share one data dir (its SQLite file: the database the bench
can always run, no PostgreSQL needed) and a nats-server started here on a free loopback port.
The devices connect to B. Each round runs wrk (``bench/rpc.lua``, 64 requests in flight, the same
session token) twice:

- ``same``: entering on B, the node holding the devices: the NATS-configured node's own path (its
  bus finds the device held here and never crosses NATS);
- ``cross``: entering on A: the call goes over NATS to B and its answer back.

Both sides pay the same store, auth and NATS-configured bus; the only difference is the NATS hop.
``rpc_cross_ratio`` is cross req/s over same req/s, all requests of all rounds pooled (as
``bench.run`` pools its rpc figures); p50/p99 are percentiles of every request. The CPU the three
processes used per call on each side (``rpc_cross_server_us``, ``rpc_same_node_server_us``) and
its ratio (``rpc_cross_cost_ratio``, same over cross) are the same comparison by cost: what the
rate ratio is when the servers have the core to themselves; ``rpc_cross_us_by_process`` and
``rpc_same_node_us_by_process`` split it by process (``a``, ``b``, ``nats``). On a shared
machine the rate ratio leans to the cross side, whose three processes get three shares of a
contended core where the same-node side's one process gets one.

Core placement: A, B and nats-server all on the server core, wrk and the device simulators on
the load core. That is more processes than cores: in the cross runs one core does A's HTTP and
auth, nats-server's routing and B's device call, so the figures are the cost of the hop on one
core, not the throughput of two nodes on two machines (which would be higher: each node would
have a core of its own). In the same-node runs A and nats-server sit idle on that core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    SERVER_CORE,
    Devices,
    Latencies,
    NatsServer,
    Server,
    cpu_seconds,
    seed,
    wrk,
)

SIDES = ("same", "cross")
READY_S = 30.0  # for node A to reach every device held by B


def run(workdir: Path, devices: int, seconds: int, rounds: int, warm: bool) -> dict[str, Any]:
    """The cross-node figures: ``devices`` devices on node B, ``rounds`` rounds of a same-node
    and a cross-node wrk run ``seconds`` long each (after one warm-up second of each if
    ``warm``)."""
    data_dir = workdir / "nodes"
    asyncio.run(seed(data_dir, devices))
    nats = NatsServer(workdir, core=SERVER_CORE)
    started: list[Server] = []
    try:
        env = {"ROOST_NATS_URL": nats.url}
        # one after the other: the first makes the keys of the shared data dir, the second
        # finds them
        started.append(Server(data_dir, env=env))
        started.append(Server(data_dir, env=env))
        return measure(started[0], started[1], nats, devices, seconds, rounds, warm)
    finally:
        for server in reversed(started):
            server.stop()
        nats.stop()


def measure(
    a: Server, b: Server, nats: NatsServer, devices: int, seconds: int, rounds: int, warm: bool
) -> dict[str, Any]:
    token = b.token()
    held = Devices(b.device_port, devices, 1, source=60)
    try:
        reach_all(a, token, devices)
        env = {"ROOST_BENCH_TOKEN": token, "ROOST_BENCH_DEVICES": str(devices)}
        urls = {"same": b.url, "cross": a.url}
        if warm:
            for side in SIDES:
                wrk(urls[side], 1, env)
        pids = {"a": a.process.pid, "b": b.process.pid, "nats": nats.process.pid}
        pooled = {side: Latencies() for side in SIDES}
        ratios: list[float] = []
        p99s: list[float] = []
        cpu: dict[str, list[float]] = {side: [] for side in SIDES}  # seconds, by round
        # seconds, by side and process, all rounds
        spent = {side: dict.fromkeys(pids, 0.0) for side in SIDES}
        for _ in range(rounds):
            this: dict[str, Latencies] = {}
            for side in SIDES:
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                this[side] = wrk(urls[side], seconds, env)
                used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
                cpu[side].append(sum(used.values()))
                for name in pids:
                    spent[side][name] += used[name]
                pooled[side].add(this[side])
            ratios.append(this["cross"].per_s / this["same"].per_s)
            p99s.append(this["cross"].percentile_ms(99))
    finally:
        held.stop()
    same, cross = pooled["same"], pooled["cross"]
    same_us = sum(cpu["same"]) / same.requests * 1e6
    cross_us = sum(cpu["cross"]) / cross.requests * 1e6
    by_process = {  # where a call's CPU goes: A (entry), B (holder), nats-server
        side: {
            name: round(used / pooled[side].requests * 1e6, 1) for name, used in spent[side].items()
        }
        for side in SIDES
    }
    return {
        "rpc_cross_per_s": round(cross.per_s),
        "rpc_cross_requests": cross.requests,
        "rpc_cross_p50_ms": round(cross.percentile_ms(50), 2),
        "rpc_cross_p99_ms": round(cross.percentile_ms(99), 2),
        "rpc_same_node_per_s": round(same.per_s),
        "rpc_same_node_p99_ms": round(same.percentile_ms(99), 2),
        "rpc_cross_ratio": round(cross.per_s / same.per_s, 3),
        "rpc_cross_rounds": [round(r, 3) for r in ratios],
        "rpc_cross_p99_rounds": [round(p, 2) for p in p99s],
        # CPU of A + B + nats-server per second of wrk, median of the rounds (all of them on the
        # server core: 1.0 is all of it), and per request (less swayed by a busy machine)
        "rpc_cross_server_cpu": round(statistics.median(cpu["cross"]) / seconds, 2),
        "rpc_same_node_server_cpu": round(statistics.median(cpu["same"]) / seconds, 2),
        "rpc_cross_server_us": round(cross_us),
        "rpc_same_node_server_us": round(same_us),
        # the ratio by CPU per call: what the rate ratio is when the core is all the servers'
        "rpc_cross_cost_ratio": round(same_us / cross_us, 3),
        "rpc_cross_us_by_process": by_process["cross"],
        "rpc_same_node_us_by_process": by_process["same"],
    }


def reach_all(a: Server, token: str, devices: int) -> None:
    """Until node A answers a call on every device (B's claims have reached NATS)."""
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + READY_S
    with httpx.Client(base_url=a.url, headers=headers) as client:
        for i in range(devices):
            while True:
                response = client.get(f"/v2/users/bench/devices/d{i}/temperature")
                if response.status_code == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node A cannot reach d{i} on node B: {response.status_code} "
                        f"{response.text[:200]}"
                    )
                time.sleep(0.05)


def summary(result: dict[str, Any]) -> str:
    return (
        f"rpc cross    {result['rpc_cross_per_s']:>8} req/s  p50 {result['rpc_cross_p50_ms']} ms  "
        f"p99 {result['rpc_cross_p99_ms']} ms  ratio {result['rpc_cross_ratio']}  (entering on "
        f"node A for devices on node B, over NATS; to the same two nodes entered on B: "
        f"{result['rpc_same_node_per_s']} req/s, p99 {result['rpc_same_node_p99_ms']} ms; "
        f"shared SQLite; A, B and nats-server on one core: CPU {result['rpc_cross_server_cpu']}, "
        f"{result['rpc_cross_server_us']} us per call, {result['rpc_same_node_server_us']} on B "
        f"alone: ratio by CPU {result['rpc_cross_cost_ratio']}; us per cross call by process "
        f"{result['rpc_cross_us_by_process']})"
    )


def main() -> None:
    """This scenario alone, as ``make bench`` runs it among the others:
    ``python -m bench.cross [--devices N] [--seconds S] [--rounds R]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.cross")
    # the defaults: the full plan of bench.run (make bench)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roost-bench-cross-") as tmp:
        result = run(Path(tmp), args.devices, args.seconds, args.rounds, warm=True)
    print(summary(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
