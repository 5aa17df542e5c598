"""Ingest: durable points per second from simulated devices' bucket writes (issue 11, item 7).

    python -m bench.ingest [--seconds 10] [--devices 100] [--in-flight 16] [--smoke] [--write FILE]

One ``roost serve`` pinned to the server core; each device of the bench user writes a bucket of
its own, ``ingest_d{i}`` (source ``write``). A bucket holds one point a ms: one written faster
than 1,000 a second would push its points ever further into the future, until a write found
1,000 ms in a row taken and was refused; a device may send no more than ``device_frame_rate``
(1,000) frames a second for long, and 100 devices share the rate (past 100,000 points/s, use
``--devices``). The writer (``generate``, one uvloop process pinned to the load core) connects
``DEVICES`` legacy devices over real sockets; each keeps ``IN_FLIGHT`` bucket writes (flag 10, a
sensor's reading, each asking for a confirmation) under way: a confirmation received, it sends
the next. Roost confirms a write only once its point is committed (WAL,
``synchronous = NORMAL``: it survives ``kill -9``). After a warm-up, ``ingest_per_s`` is the
confirmations received over the measured seconds; refusals are counted and fail the run.

The baseline (``bare``, pinned to the server core once the server has stopped) inserts THE SAME
ROWS (read back from the server's database: owner, bucket, ts, JSON text) into a fresh database
with the same schema (the store's migrations) and the same connection settings
(``roost.store.sqlite.connect``: WAL, ``synchronous = NORMAL``, foreign keys), one plain
``INSERT`` per row in autocommit: each row committed on its own, as each acknowledged point must
be durable before its acknowledgment. ``ingest_ratio`` is ``ingest_per_s`` over that rate. For
scale, ``ingest_bare_one_tx_per_s`` is the same rows in one transaction (durable only at the end:
no ingest path that acknowledges each point can reach it).

Prints a human summary, then as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.harness import (
    CREDENTIALS,
    LOAD_CORE,
    ROOT,
    SERVER_CORE,
    USER,
    Server,
    append_run,
    cpu_seconds,
    seed,
)
from roost.store.base import Bucket, User
from roost.store.sqlite import SQLiteStore, connect
from roost.wire import legacy
from roost.wire.legacy import KeepAlive, Message, Signal

BUCKET = "ingest"
DEVICES = 100
IN_FLIGHT = 16  # writes each device keeps under way (its frame allowance is 1000/s)
WARMUP_S = 1.0
BARE_ROWS = 300_000  # rows the baseline inserts at most (the first ones the server stored)
READING = {"temperature": 21.5, "humidity": 48, "pressure": 1013.25}
CONNECTING = 64  # connections authenticating at once (the server allows 100 per address)


def bucket_of(device: str) -> str:
    return f"{BUCKET}_{device}"


def write_frames(device: str, in_flight: int) -> list[bytes]:
    """A device's writes into its bucket, one per stream id 1..in_flight."""
    bucket = bucket_of(device)
    return [
        legacy.encode(Message(stream_id, Signal.BUCKET_DATA, identifier=bucket, payload=READING))
        for stream_id in range(1, in_flight + 1)
    ]


class Writer(asyncio.Protocol):
    """One device: authenticates, then keeps ``in_flight`` confirmed bucket writes under way,
    each on its own stream id; a confirmation sends that stream's next write."""

    def __init__(self, name: str, tally: Tally, up: asyncio.Future[bool]) -> None:
        self.name, self.tally, self.up = name, tally, up
        self.frames = write_frames(name, tally.in_flight)
        self.decoder = legacy.Decoder()
        self.transport: asyncio.Transport | None = None
        self.sent_at = [0.0] * (tally.in_flight + 1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        auth = Message(signal=Signal.AUTH, resource=[USER, self.name, CREDENTIALS])
        self.transport.write(legacy.encode(auth))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        out: list[bytes] = []
        now = time.perf_counter()
        tally, frames, sent_at = self.tally, self.frames, self.sent_at
        for frame in self.decoder.feed(data):
            if isinstance(frame, KeepAlive):
                continue
            if not self.up.done():
                accepted = frame.signal == Signal.REQUEST_OK
                self.up.set_result(accepted)
                if accepted:  # the first writes, all under way at once
                    out += frames
                    sent_at[1:] = [now] * tally.in_flight
                continue
            stream_id = frame.stream_id
            if frame.signal == Signal.REQUEST_OK:
                tally.confirmed += 1
                if tally.measuring:
                    tally.latencies.append(now - sent_at[stream_id])
            else:
                tally.refused += 1
            if tally.running:
                out.append(frames[stream_id - 1])
                sent_at[stream_id] = now
        if out:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.up.done():
            self.up.set_result(False)
        elif self.tally.running:
            self.tally.lost += 1


class Tally:
    def __init__(self, in_flight: int) -> None:
        self.in_flight = in_flight
        self.confirmed = self.refused = self.lost = 0
        self.running, self.measuring = True, False
        self.latencies: list[float] = []


async def generate(port: int, devices: int, in_flight: int, seconds: float) -> dict[str, Any]:
    """The writer's side: connect, warm up, measure ``seconds``; the figures."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    tally = Tally(in_flight)
    gate = asyncio.Semaphore(CONNECTING)

    async def start(i: int) -> asyncio.BaseTransport:
        async with gate:
            up: asyncio.Future[bool] = loop.create_future()
            transport, _ = await loop.create_connection(
                lambda: Writer(f"d{i}", tally, up), "127.0.0.1", port
            )
            if not await asyncio.wait_for(up, 30):
                raise RuntimeError(f"device d{i} was refused")
            return transport

    transports = await asyncio.gather(*(start(i) for i in range(devices)))
    await asyncio.sleep(WARMUP_S)
    print("measuring", flush=True)
    tally.measuring = True
    confirmed0, started, cpu0 = tally.confirmed, time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    confirmed, elapsed = tally.confirmed - confirmed0, time.perf_counter() - started
    cpu = time.process_time() - cpu0
    tally.measuring = False
    print("measured", flush=True)
    tally.running = False
    await asyncio.sleep(0.5)  # the writes under way are confirmed
    for transport in transports:
        transport.close()
    latencies = sorted(tally.latencies)
    return {
        "confirmed": confirmed,
        "seconds": round(elapsed, 3),
        "per_s": round(confirmed / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
        "refused": tally.refused,
        "lost": tally.lost,
        "cpu": round(cpu / elapsed, 2),
    }


def bare(source: Path, workdir: Path, devices: int) -> dict[str, Any]:
    """The baseline: the rows the server stored, inserted again into a fresh database by a plain
    sqlite3 loop with the store's schema and settings, one commit per row; then the same rows in
    one transaction."""
    with sqlite3.connect(source) as conn:
        sql = "SELECT owner, bucket, ts, value FROM bucket_points ORDER BY ts LIMIT ?"
        rows = conn.execute(sql, (BARE_ROWS,)).fetchall()
    if not rows:
        raise RuntimeError("the server stored no point")
    figures: dict[str, Any] = {"rows": len(rows)}
    insert = "INSERT INTO bucket_points (owner, bucket, ts, value) VALUES (?, ?, ?, ?)"
    for name in ("per_row", "one_tx"):
        conn = fresh(workdir / f"bare-{name}.db", devices)
        try:
            started, cpu0 = time.perf_counter(), time.process_time()
            if name == "per_row":
                for row in rows:
                    conn.execute(insert, row)  # autocommit: its own transaction
            else:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, rows)
                conn.execute("COMMIT")
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
            figures[f"{name}_per_s"] = round(len(rows) / elapsed)
            figures[f"{name}_cpu"] = round(cpu / elapsed, 2)
            (count,) = conn.execute("SELECT count(*) FROM bucket_points").fetchone()
            if count != len(rows):
                raise RuntimeError(f"the baseline stored {count} rows of {len(rows)}")
        finally:
            conn.close()
    return figures


def fresh(path: Path, devices: int) -> sqlite3.Connection:
    """An empty database made by the store (its schema), with the bench user and the devices'
    buckets; then a plain connection to it with the store's settings."""
    asyncio.run(seed_buckets(path, devices, with_user=True))
    return connect(path)


async def seed_buckets(path: Path, devices: int, with_user: bool = False) -> None:
    """The devices' buckets, ingest_d{i}, that they write (source ``write``)."""
    store = SQLiteStore(path)
    await store.open()
    try:
        now = int(time.time() * 1000)
        if with_user:
            await store.create_user(User(USER, "-", "user", now))
        config = {"source": "write"}
        for i in range(devices):
            bucket = bucket_of(f"d{i}")
            record = Bucket(USER, bucket, bucket, "", True, config, None, now, now)
            await store.create_bucket(record)
    finally:
        await store.close()


def role(name: str, core: str, *args: str) -> subprocess.Popen[str]:
    """This module run as ``name`` (generate or bare) in a process pinned to ``core``."""
    command = ["taskset", "-c", core, sys.executable, "-m", "bench.ingest", name, *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT.parent)


def last_json(proc: subprocess.Popen[str], timeout: float) -> Any:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args} failed with status {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure_writes(
    server: Server, devices: int, in_flight: int, seconds: float
) -> tuple[dict[str, Any], float]:
    """The writer's figures against ``server`` (stopped at the end), and the server's CPU seconds
    while it measured; raises if a write was refused or a connection lost."""
    try:
        writer = role(
            "generate", LOAD_CORE, *map(str, (server.device_port, devices, in_flight, seconds))
        )
        assert writer.stdout is not None
        if writer.stdout.readline().strip() != "measuring":
            raise RuntimeError("the writer did not get going")
        cpu0 = cpu_seconds(server.process.pid)
        if writer.stdout.readline().strip() != "measured":
            raise RuntimeError("the writer stopped measuring early")
        cpu = cpu_seconds(server.process.pid) - cpu0
        written = last_json(writer, 120)
    finally:
        server.stop()
    if written["refused"] or written["lost"]:
        raise RuntimeError(f"writes refused or connections lost: {written}")
    return written, cpu


def run(seconds: float, devices: int = DEVICES, in_flight: int = IN_FLIGHT) -> dict[str, Any]:
    """The scenario; its figures, named as in the suite's last line."""
    with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
        data_dir = Path(tmp) / "roost"
        asyncio.run(seed(data_dir, devices))
        asyncio.run(seed_buckets(data_dir / "roost.db", devices))
        written, cpu = measure_writes(Server(data_dir), devices, in_flight, seconds)
        baseline = last_json(
            role("bare", SERVER_CORE, str(data_dir / "roost.db"), tmp, str(devices)), 600
        )
    per_s = written["per_s"]
    return {
        "ingest_per_s": per_s,
        "ingest_ratio": round(per_s / baseline["per_row_per_s"], 3),
        "ingest_p50_ms": written["p50_ms"],
        "ingest_p99_ms": written["p99_ms"],
        "ingest_devices": devices,
        "ingest_in_flight": devices * in_flight,
        "ingest_server_cpu": round(cpu / written["seconds"], 2),
        "ingest_writer_cpu": written["cpu"],
        "ingest_bare_per_s": baseline["per_row_per_s"],
        "ingest_bare_cpu": baseline["per_row_cpu"],
        "ingest_bare_one_tx_per_s": baseline["one_tx_per_s"],
        "ingest_bare_rows": baseline["rows"],
    }


def summary(result: dict[str, Any]) -> str:
    return (
        f"ingest       {result['ingest_per_s']:>8} points/s  ratio {result['ingest_ratio']}  "
        f"(confirmed bucket writes, {result['ingest_devices']} devices, "
        f"{result['ingest_in_flight']} writes under way; p50 {result['ingest_p50_ms']} ms, "
        f"p99 {result['ingest_p99_ms']} ms; server CPU {result['ingest_server_cpu']}, writer "
        f"CPU {result['ingest_writer_cpu']}; bare sqlite3 {result['ingest_bare_per_s']} rows/s "
        f"one commit each (CPU {result['ingest_bare_cpu']}), "
        f"{result['ingest_bare_one_tx_per_s']} in one transaction)"
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of an ingest run, on SQLite (here) or PostgreSQL (bench.ingest_pg)."""
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--devices", type=int, default=DEVICES, help="writing devices")
    parser.add_argument(
        "--in-flight", type=int, default=IN_FLIGHT, help="writes each device keeps under way"
    )
    parser.add_argument("--smoke", action="store_true", help="1 s: keeps it honest")
    parser.add_argument("--write", type=Path, help="append the results to this Markdown file")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "generate":
        port, devices, in_flight = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(uvloop.run(generate(port, devices, in_flight, float(sys.argv[5])))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        print(json.dumps(bare(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    add_run_arguments(parser)
    args = parser.parse_args()
    result = run(1.0) if args.smoke else run(args.seconds, args.devices, args.in_flight)
    print(summary(result))
    if args.write:
        options = [a for a in sys.argv[1:] if a not in ("--write", str(args.write))]
        placement = (
            f"Server and the bare baseline pinned to core {SERVER_CORE}; the writer pinned to "
            f"core {LOAD_CORE}."
        )
        command = " ".join(["python -m bench.ingest", *options])
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
