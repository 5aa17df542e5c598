"""PostgresStore: the bucket part of the Store contract (points and their aggregation)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from roost.errors import NotFound
from roost.store.base import BucketPoint
from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from bucket_aggregate_contract import *  # noqa: F403

from bucket_store_contract import *  # noqa: F403
from bucket_store_contract import _T0, _with_bucket


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    await opened.open()
    yield opened
    await opened.close()


async def test_writes_to_one_bucket_land_in_the_order_they_came(store: PostgresStore) -> None:
    """A pool runs calls side by side; a device's writes to one bucket (read the bucket, then
    write at the first free ms) must keep their order, as on SQLite's one thread."""
    await _with_bucket(store)

    async def device_write(n: int) -> None:
        assert await store.get_bucket("alice", "temp") is not None
        await store.write_points("alice", "temp", [(1000, {"n": n})], replace=False)

    await asyncio.gather(*(device_write(n) for n in range(30)))
    points = await store.read_points("alice", "temp", None, None, 100)
    assert [(p.ts, p.value["n"]) for p in points] == [(1000 + n, n) for n in range(30)]
    assert len(store._buckets) == 0  # keys without calls are forgotten


async def test_two_nodes_writing_one_bucket_at_one_ts_keep_every_point(
    store: PostgresStore, postgres_url: str
) -> None:
    """Each node's group picks free ts for its writes; another node's group must not pick the
    same ones meanwhile (a point would replace another: an acknowledged write lost)."""
    await _with_bucket(store)
    other = PostgresStore(postgres_url)
    await other.open()
    try:
        writes = [
            node.write_points("alice", "temp", [(5000, f"{name}{n}")], replace=False)
            for n in range(40)
            for node, name in ((store, "a"), (other, "b"))
        ]
        await asyncio.gather(*writes)
    finally:
        await other.close()
    points = await store.read_points("alice", "temp", None, None, 1000)
    assert sorted(p.value for p in points) == sorted(f"{x}{n}" for n in range(40) for x in "ab")
    assert [p.ts for p in points] == list(range(5000, 5080))


async def test_a_write_the_database_refuses_in_a_group_fails_alone(
    store: PostgresStore, postgres_url: str
) -> None:
    """A bucket deleted after the group found it: its rows break a foreign key, the group runs
    again write by write, and only that write fails."""
    await _with_bucket(store)
    await _with_bucket(store, "gone")
    base = postgres_url.split("?")[0]
    deleter = await asyncpg.connect(base, server_settings={"search_path": _schema(postgres_url)})
    try:
        deleting = deleter.transaction()
        await deleting.start()
        await deleter.execute("DELETE FROM buckets WHERE owner = 'alice' AND bucket = 'gone'")
        writes = [store.write_points("alice", "temp", [(_T0 + n, n)]) for n in range(5)]
        writes.insert(2, store.write_points("alice", "gone", [(_T0, "lost")], replace=False))
        gathered = asyncio.gather(*writes, return_exceptions=True)
        for _ in range(200):  # the group's insert waits for the delete's lock on the bucket
            waiting = await deleter.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY"
                " (pg_blocking_pids(pid))"
            )
            if waiting or gathered.done():
                break
            await asyncio.sleep(0.02)
        await deleting.commit()
        outcomes = await gathered
    finally:
        await deleter.close()
    assert isinstance(outcomes.pop(2), NotFound)
    assert outcomes == [None] * 5
    got = await store.read_points("alice", "temp", None, None, 10)
    assert got == [BucketPoint(_T0 + n, n) for n in range(5)]


def _schema(url: str) -> str:
    return url.rsplit("search_path=", 1)[1].split("&")[0]
