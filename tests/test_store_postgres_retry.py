"""PostgresStore: a group of point writes whose first try found a ts taken meanwhile runs again
under its buckets' locks; nodes retrying at once, or a node's first try committing meanwhile,
must fail no valid write. Other connections to the database play the competing nodes (points
written and not yet committed, a bucket's lock held), so that each race happens every time."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract helpers sit next to this module
    sys.path.insert(0, str(Path(__file__).parent))

from bucket_store_contract import _T0, _with_bucket

_INSERT = "INSERT INTO bucket_points (owner, bucket, ts, value) VALUES ('alice', $1, $2, '0')"
_LOCK_KEY = "hashtextextended('alice/' || $1, 0)"


@pytest.fixture
async def connect(postgres_url: str) -> AsyncIterator[Any]:
    """Opens nodes (stores named by application_name) and plain connections, closed after."""
    opened: list[Any] = []

    async def node(name: str) -> PostgresStore:
        store = PostgresStore(f"{postgres_url}&application_name={name}")
        await store.open()
        opened.append(store)
        return store

    async def conn() -> asyncpg.Connection:
        opened.append(await asyncpg.connect(postgres_url))
        return opened[-1]

    yield node, conn
    for each in reversed(opened):
        await each.close()


async def test_two_nodes_retrying_groups_in_opposite_orders_fail_no_write(connect: Any) -> None:
    """Node b's retry waits for bucket y while node a's holds x and waits for y too: once y is
    free, b must not then wait for x (a deadlock PostgreSQL breaks by failing a whole group)."""
    node, conn = connect
    a, b = await node("node_a"), await node("node_b")
    await _with_bucket(a, "x")
    await _with_bucket(a, "y")
    taker_a, taker_b, locker = await conn(), await conn(), await conn()
    for n in range(3):
        ts_a, ts_b = _T0 + 10_000 * n, _T0 + 10_000 * n + 5_000
        await locker.fetchval(f"SELECT pg_advisory_lock({_LOCK_KEY})", "y")
        taking_a, taking_b = taker_a.transaction(), taker_b.transaction()
        for taker, taking, ts in ((taker_a, taking_a, ts_a), (taker_b, taking_b, ts_b)):
            await taking.start()  # each group's first try will find its ts taken meanwhile
            await taker.executemany(_INSERT, [("x", ts), ("y", ts)])
        group_b = _group(b, [("y", ts_b), ("x", ts_b)])
        await _blocked(taker_b, "node_b", group_b, by=taker_b)
        await taking_b.commit()
        await _blocked(taker_b, "node_b", group_b, by=locker)  # b's retry waits for y
        group_a = _group(a, [("x", ts_a), ("y", ts_a)])
        await _blocked(taker_a, "node_a", group_a, by=taker_a)
        await taking_a.commit()
        await _blocked(taker_a, "node_a", group_a, besides=taker_a)  # a's retry waits too
        await locker.fetchval(f"SELECT pg_advisory_unlock({_LOCK_KEY})", "y")
        assert await asyncio.gather(group_a, group_b) == [[None, None], [None, None]]
    for bucket in "xy":
        points = await a.read_points("alice", bucket, None, None, 100)
        assert len(points) == 3 * 4  # each round: two taken, two written


async def test_a_retry_whose_ts_another_node_commits_meanwhile_chooses_again(
    connect: Any,
) -> None:
    """The retry read the bucket's taken ts under its lock; another node's first try (which
    takes no lock) commits a point at the ts it chose: the write takes the next free one."""
    node, conn = connect
    a = await node("node_a")
    await _with_bucket(a, "x")
    first, second = await conn(), await conn()
    taking_first, taking_second = first.transaction(), second.transaction()
    await taking_first.start()
    await first.execute(_INSERT, "x", _T0)  # found free by the first try, then taken
    await taking_second.start()
    await second.execute(_INSERT, "x", _T0 + 1)  # found free by the retry, then taken
    group = _group(a, [("x", _T0)])
    await _blocked(first, "node_a", group, by=first)
    await taking_first.commit()
    await _blocked(first, "node_a", group, by=second)
    await taking_second.commit()
    assert await group == [None]
    points = await a.read_points("alice", "x", None, None, 10)
    assert [p.ts for p in points] == [_T0, _T0 + 1, _T0 + 2]
    assert points[2].value == "x"


def _group(store: PostgresStore, writes: list[tuple[str, int]]) -> asyncio.Future[list[Any]]:
    """The writes, queued at once (one group), each an untimed point whose value is its bucket."""
    return asyncio.gather(
        *(
            store.write_points("alice", bucket, [(ts, bucket)], replace=False)
            for bucket, ts in writes
        ),
        return_exceptions=True,
    )


async def _blocked(
    conn: asyncpg.Connection,
    node: str,
    group: Awaitable[Any],
    *,
    by: asyncpg.Connection | None = None,
    besides: asyncpg.Connection | None = None,
) -> None:
    """Until a connection of ``node`` waits for a lock ``by`` a connection, or held by any but
    ``besides`` (bounded); the group must not have finished meanwhile."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND cardinality(pg_blocking_pids(pid)) > 0"
        " AND ($2::int IS NULL OR $2 = ANY (pg_blocking_pids(pid)))"
        " AND ($3::int IS NULL OR NOT $3 = ANY (pg_blocking_pids(pid)))"
    )
    pids = [c.get_server_pid() if c is not None else None for c in (by, besides)]
    for _ in range(500):
        if await conn.fetchval(query, node, *pids):
            return
        assert not asyncio.ensure_future(group).done(), await group
        await asyncio.sleep(0.01)
    raise AssertionError(f"{node} never waited for the lock")
