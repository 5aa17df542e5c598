"""One device floods, everyone else waits? The healthcheck's latency, seen from another process,
while one authenticated device sends tiny stream frames as fast as it can, against a quiet
baseline (issue 14, item 7).

    python -m bench.flood [--seconds 10] [--smoke] [--write BENCHMARKS.md]

One ``roost serve`` pinned to the server core; the prober (``GET /v1/server/healthcheck``, a
fresh connection each time, every 5 ms) and the flooder (legacy AUTH, then 64 KiB blocks of
6-byte STREAM_SAMPLE frames, ``send`` after ``send``) are separate processes on the load core.
The latency figures pool every request of a phase: p50, p99 and max in ms. The flooder reports
what the server took (bytes and frames sent) and when the server closed it, if it did.

Prints a human summary, then as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import CREDENTIALS, LOAD_CORE, ROOT, SERVER_CORE, USER, Server, append_run, seed
from roost.wire import legacy
from roost.wire.legacy import Message, Signal

PROBE_INTERVAL = 0.005
FRAME = legacy.encode(Message(stream_id=1, signal=Signal.STREAM_SAMPLE, payload=1))
BLOCK = FRAME * (65536 // len(FRAME))


def probe(port: int, seconds: float) -> list[float]:
    """Healthcheck latencies (ms) over ``seconds``, one fresh connection per request."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/v1/server/healthcheck")
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"healthcheck answered {response.status}")
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(PROBE_INTERVAL)
    return latencies


def flood(port: int, device: str, seconds: float) -> dict[str, Any]:
    """Authenticate ``device``, then send tiny stream frames as fast as the server takes them."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(legacy.encode(Message(signal=Signal.AUTH, resource=[USER, device, CREDENTIALS])))
    if sock.recv(4) != legacy.encode(Message(signal=Signal.REQUEST_OK)):
        raise RuntimeError("the flooding device was not accepted")
    print("in", flush=True)
    sock.settimeout(0.2)
    sent = 0
    closed_after: float | None = None
    started = time.monotonic()
    view = memoryview(BLOCK)
    while (elapsed := time.monotonic() - started) < seconds:
        try:
            sent += sock.send(view[sent % len(BLOCK) :])
        except TimeoutError:  # the server is not reading
            continue
        except OSError:
            closed_after = elapsed
            break
    sock.close()
    return {
        "bytes": sent,
        "frames": sent // len(FRAME),
        "closed_after_s": None if closed_after is None else round(closed_after, 2),
    }


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def role(name: str, *args: str) -> subprocess.Popen[str]:
    """This module run as ``name`` (probe or flood) in a process pinned to the load core."""
    command = ["taskset", "-c", LOAD_CORE, sys.executable, "-m", "bench.flood", name, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT.parent)


def last_json(proc: subprocess.Popen[str]) -> Any:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def run(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        data_dir = Path(tmp)
        asyncio.run(seed(data_dir, 1))
        server = Server(data_dir)
        try:
            quiet = last_json(role("probe", str(server.http_port), str(seconds)))
            flooder = role("flood", str(server.device_port), "d0", str(seconds + 1))
            assert flooder.stdout is not None
            if flooder.stdout.readline().strip() != "in":
                raise RuntimeError("the flooder did not get in")
            time.sleep(0.5)
            flooded = last_json(role("probe", str(server.http_port), str(seconds)))
            flooder_figures = last_json(flooder)
        finally:
            server.stop()
    return {
        "seconds": seconds,
        "quiet": percentiles(quiet),
        "flood": percentiles(flooded),
        "flooder": flooder_figures,
    }


def summary(result: dict[str, Any]) -> str:
    lines = []
    for phase in ("quiet", "flood"):
        f = result[phase]
        lines.append(
            f"healthcheck {phase:<5}  {f['requests']:>5} requests  p50 {f['p50_ms']} ms  "
            f"p99 {f['p99_ms']} ms  max {f['max_ms']} ms"
        )
    flooder = result["flooder"]
    closed = flooder["closed_after_s"]
    lines.append(
        f"flooder     {flooder['frames']:>10} frames taken ({flooder['bytes']} bytes); "
        + ("not closed" if closed is None else f"closed by the server after {closed} s")
    )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        print(json.dumps(probe(int(sys.argv[2]), float(sys.argv[3]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "flood":
        print(json.dumps(flood(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.flood")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--smoke", action="store_true", help="1 s phases: keeps it honest")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    result = run(1.0 if args.smoke else args.seconds)
    print(summary(result))
    if args.write:
        options = [a for a in sys.argv[1:] if a not in ("--write", str(args.write))]
        placement = (
            f"Server pinned to core {SERVER_CORE}; the prober and the flooder pinned to core "
            f"{LOAD_CORE}."
        )
        command = " ".join(["python -m bench.flood", *options])
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
