"""Bucket reads with a million points (issue 11, item 7): the latest 1,000 points and an hourly
mean over one day, each over real HTTP, median of many requests (target: <= 50 ms each).

    python -m bench.bucket_reads [--points 1000000] [--requests 50] [--smoke] [--write FILE]

The points (one every 10 s, ``{"temperature": float, "humidity": int}``: 1,000,000 points are
116 days, one day 8,640 points) go straight into the data dir's SQLite file before the server
starts, in one transaction; then one ``roost serve`` pinned to the server core answers a client
pinned to the load core, on one keep-alive connection: ``GET /v2/.../data?items=1000`` (the
latest first) and ``GET /v2/.../data?agg=1h&agg_type=mean&min_ts=...&max_ts=...`` over 24 hours,
each request on another day of the bucket.

Prints a human summary, then as its LAST line one JSON object with every figure
(``bucket_latest_ms``, ``bucket_hourly_mean_ms``: medians; p90 beside them); ``bench.run`` runs
it too and puts the same figures in its own last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import LOAD_CORE, ROOT, SERVER_CORE, USER, Server, append_run, seed

BUCKET = "bench"
T0 = 1_760_000_000_000  # ms, the first point
STEP_MS = 10_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def fill(data_dir: Path, points: int) -> float:
    """The bucket and its points, straight into the database; how many seconds it took."""
    started = time.perf_counter()
    rng = random.Random(11)
    conn = sqlite3.connect(data_dir / "roost.db", isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO buckets VALUES (?, ?, ?, '', 1, '{\"source\":\"api\"}', NULL, ?, ?)",
            (USER, BUCKET, BUCKET, T0, T0),
        )
        conn.executemany(
            "INSERT INTO bucket_points (owner, bucket, ts, value) VALUES (?, ?, ?, ?)",
            (
                (
                    USER,
                    BUCKET,
                    T0 + i * STEP_MS,
                    f'{{"temperature":{20 + rng.random() * 5:.2f},'
                    f'"humidity":{rng.randint(30, 70)}}}',
                )
                for i in range(points)
            ),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.perf_counter() - started


def client(port: int, token: str, points: int, requests: int) -> dict[str, list[float]]:
    """Latencies (ms) of both reads, ``requests`` each, alternating, after a warm-up of each."""
    last = T0 + (points - 1) * STEP_MS
    days = max(1, (last - T0) // DAY_MS)
    url = f"http://127.0.0.1:{port}/v2/users/{USER}/buckets/{BUCKET}/data"
    headers = {"Authorization": f"Bearer {token}"}
    out: dict[str, list[float]] = {"latest": [], "hourly_mean": []}
    with httpx.Client(headers=headers, timeout=30) as http:

        def timed(name: str, params: dict[str, Any], expect: range) -> None:
            started = time.perf_counter()
            response = http.get(url, params=params)
            elapsed = (time.perf_counter() - started) * 1000
            rows = response.json()
            if response.status_code != 200 or len(rows) not in expect:
                raise RuntimeError(f"{name}: {response.status_code}, {len(rows)} rows")
            if name:
                out[name].append(elapsed)

        for n in range(requests + 1):
            timed("latest" if n else "", {"items": 1000}, range(min(1000, points), 1001))
            # one day of whole hours (UTC), ending at an hour boundary: 24 hourly rows
            high = (last - (n % days) * DAY_MS) // HOUR_MS * HOUR_MS - 1
            low = max(T0, high - DAY_MS + 1)
            day = {"agg": "1h", "agg_type": "mean", "min_ts": low, "max_ts": high}
            timed("hourly_mean" if n else "", day, range(1, 25))
    return out


SMOKE = (20_000, 5)  # points, requests of each read
FULL = (1_000_000, 50)


def run(points: int, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        data_dir = Path(tmp)
        asyncio.run(seed(data_dir, 0))
        fill_s = fill(data_dir, points)
        server = Server(data_dir)
        try:
            command = [
                *("taskset", "-c", LOAD_CORE, sys.executable, "-m", "bench.bucket_reads"),
                *("client", str(server.http_port), server.token(), str(points), str(requests)),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, cwd=ROOT.parent, timeout=600
            )
            if done.returncode != 0:
                raise RuntimeError(f"the client failed: {done.stderr.strip()[-500:]}")
            latencies = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            server.stop()
    result: dict[str, Any] = {
        "bucket_points": points,
        "bucket_requests": requests,
        "bucket_fill_s": round(fill_s, 1),
    }
    for name, values in latencies.items():
        ordered = sorted(values)
        result[f"bucket_{name}_ms"] = round(statistics.median(ordered), 2)
        result[f"bucket_{name}_p90_ms"] = round(ordered[int(len(ordered) * 0.9)], 2)
    return result


def summary(result: dict[str, Any]) -> str:
    return "\n".join(
        f"bucket {what:<22} median {result[f'bucket_{name}_ms']} ms, p90 "
        f"{result[f'bucket_{name}_p90_ms']} ms ({result['bucket_requests']} requests, "
        f"{result['bucket_points']} points)"
        for name, what in (("latest", "latest 1000 items"), ("hourly_mean", "hourly mean, 1 day"))
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        port, token, points, requests = sys.argv[2:6]
        print(json.dumps(client(int(port), token, int(points), int(requests))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.bucket_reads")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=50, help="of each read")
    parser.add_argument("--smoke", action="store_true", help="20,000 points, 5 requests each")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args()
    points, requests = SMOKE if args.smoke else (args.points, args.requests)
    result = run(points, requests)
    print(summary(result))
    if args.write:
        options = [a for a in sys.argv[1:] if a not in ("--write", str(args.write))]
        placement = f"Server pinned to core {SERVER_CORE}; the client pinned to core {LOAD_CORE}."
        command = " ".join(["python -m bench.bucket_reads", *options])
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
