"""Ingest into PostgreSQL: durable points per second from simulated devices' bucket writes, the
``bench.ingest`` scenario with the server on PostgreSQL (issue 13, item 5).

    python -m bench.ingest_pg [--database-url URL] [--seconds 10] [--devices 100]
        [--in-flight 16] [--smoke] [--write FILE]

The same devices, writes under way, warm-up and measured seconds as ``bench.ingest`` (its writer,
``generate``, pinned to the load core), with one ``roost serve`` pinned to the server core on
``ROOST_DATABASE_URL``: a fresh schema of the database at ``--database-url`` (default
``ROOST_BENCH_DATABASE_URL``) made for the run and dropped after it, so runs repeat. PostgreSQL
keeps its own settings (``synchronous_commit`` on by default: a commit is flushed before it is
acknowledged, and Roost confirms a write only after its commit); it runs wherever it runs, not
pinned. ``ingest_pg_per_s`` is the confirmations received over the measured seconds, with p50
and p99 of the confirmations' latencies; refusals fail the run. After the run, the points stored
are counted: fewer than confirmed fails it too.

Prints a human summary, then as its LAST line one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bench.harness import LOAD_CORE, SERVER_CORE, USER, Server, append_run, seed
from bench.ingest import DEVICES, IN_FLIGHT, add_run_arguments, bucket_of, measure_writes
from roost.store.base import Bucket
from roost.store.postgres import PostgresStore

ENV = "ROOST_BENCH_DATABASE_URL"


def in_schema(url: str, schema: str) -> str:
    """``url`` with its search_path set to ``schema`` (the store's tables go there)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


async def make_schema(url: str) -> str:
    schema = f"roost_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return schema


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def seed_buckets(url: str, devices: int) -> None:
    """The devices' buckets, ingest_d{i} (source ``write``), as ``bench.ingest`` makes them."""
    store = PostgresStore(url)
    await store.open()
    try:
        now = int(time.time() * 1000)
        for i in range(devices):
            bucket = bucket_of(f"d{i}")
            record = Bucket(USER, bucket, bucket, "", True, {"source": "write"}, None, now, now)
            await store.create_bucket(record)
    finally:
        await store.close()


async def stored(url: str) -> int:
    store = PostgresStore(url)
    await store.open()
    try:
        sql = "SELECT count(*) FROM bucket_points"
        return int(await store.run(lambda conn: conn.fetchval(sql)))
    finally:
        await store.close()


def run(
    seconds: float, database_url: str, devices: int = DEVICES, in_flight: int = IN_FLIGHT
) -> dict[str, Any]:
    """The scenario on PostgreSQL; its figures, named as in the suite's last line."""
    schema = asyncio.run(make_schema(database_url))
    url = in_schema(database_url, schema)
    try:
        with tempfile.TemporaryDirectory(prefix="roost-bench-") as tmp:
            data_dir = Path(tmp) / "roost"
            asyncio.run(seed(data_dir, devices, database_url=url))
            asyncio.run(seed_buckets(url, devices))
            server = Server(data_dir, env={"ROOST_DATABASE_URL": url})
            written, cpu = measure_writes(server, devices, in_flight, seconds)
        points = asyncio.run(stored(url))
        if points < written["confirmed"]:
            raise RuntimeError(f"{written['confirmed']} writes confirmed, {points} points stored")
    finally:
        asyncio.run(drop_schema(database_url, schema))
    return {
        "ingest_pg_per_s": written["per_s"],
        "ingest_pg_p50_ms": written["p50_ms"],
        "ingest_pg_p99_ms": written["p99_ms"],
        "ingest_pg_devices": devices,
        "ingest_pg_in_flight": devices * in_flight,
        "ingest_pg_server_cpu": round(cpu / written["seconds"], 2),
        "ingest_pg_writer_cpu": written["cpu"],
        "ingest_pg_points": points,
    }


def summary(result: dict[str, Any]) -> str:
    return (
        f"ingest PG    {result['ingest_pg_per_s']:>8} points/s  (confirmed bucket writes into "
        f"PostgreSQL, synchronous_commit as the server has it; {result['ingest_pg_devices']} "
        f"devices, {result['ingest_pg_in_flight']} writes under way; p50 "
        f"{result['ingest_pg_p50_ms']} ms, p99 {result['ingest_pg_p99_ms']} ms; server CPU "
        f"{result['ingest_pg_server_cpu']}, writer CPU {result['ingest_pg_writer_cpu']})"
    )


def synchronous_commit(database_url: str) -> str:
    async def show() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SHOW synchronous_commit"))
        finally:
            await conn.close()

    return asyncio.run(show())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_pg")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(ENV, ""),
        help=f"a PostgreSQL database the bench may make a schema in (default ${ENV})",
    )
    add_run_arguments(parser)
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit(f"no PostgreSQL: give --database-url or set {ENV}")
    seconds = 1.0 if args.smoke else args.seconds
    result = run(seconds, args.database_url, args.devices, args.in_flight)
    print(summary(result))
    if args.write:
        options = [a for a in sys.argv[1:] if a not in ("--write", str(args.write))]
        options = [a for a in options if a != args.database_url and a != "--database-url"]
        command = " ".join(["python -m bench.ingest_pg", *options])
        placement = (
            f"Server pinned to core {SERVER_CORE}, the writer to core {LOAD_CORE}; PostgreSQL "
            "on the same machine, not pinned, synchronous_commit "
            f"{synchronous_commit(args.database_url)}."
        )
        append_run(args.write, command, placement, summary(result), result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
