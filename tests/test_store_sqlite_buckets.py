"""SQLiteStore: the bucket part of the Store contract, plus what only a file on disk can show."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.errors import NotFound
from roost.store.sqlite import SQLiteStore

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from bucket_aggregate_contract import *  # noqa: F403

from bucket_store_contract import *  # noqa: F403
from bucket_store_contract import _with_bucket


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "roost.db")
    await opened.open()
    yield opened
    await opened.close()


async def test_written_points_are_in_the_file_once_write_returns(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(1, {"t": 1}), (2, {"t": 2})])
    # another connection, as another process would see the file (the WAL included)
    with sqlite3.connect(tmp_path / "roost.db") as other:
        rows = other.execute("SELECT ts, value FROM bucket_points ORDER BY ts").fetchall()
    assert rows == [(1, '{"t":1}'), (2, '{"t":2}')]


async def test_writes_are_answered_only_after_their_commit_and_a_failing_one_alone(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Another connection holds the write lock (as an admin command may): the writes queued
    meanwhile wait together; none is answered before the commit that holds it, and the one
    that fails (its bucket does not exist) fails alone."""
    await _with_bucket(store)
    path = tmp_path / "roost.db"
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        writes = [
            asyncio.ensure_future(store.write_points("alice", "temp", [(i, i)], replace=False))
            for i in range(30)
        ]
        failing = asyncio.ensure_future(store.write_points("alice", "absent", [(1, 1)]))
        done, _ = await asyncio.wait([*writes, failing], timeout=0.3)
        assert not done  # nothing is committed: nobody is answered
        other.execute("COMMIT")
        await asyncio.gather(*writes)
        with pytest.raises(NotFound):
            await failing
    finally:
        other.close()
    with sqlite3.connect(path) as reader:
        rows = reader.execute("SELECT ts FROM bucket_points ORDER BY ts").fetchall()
    assert rows == [(i,) for i in range(30)]


async def test_each_concurrent_write_is_in_the_file_when_it_is_answered(
    store: SQLiteStore, tmp_path: Path
) -> None:
    await _with_bucket(store)
    reader = sqlite3.connect(tmp_path / "roost.db")

    async def write_then_look(ts: int) -> bool:
        await store.write_points("alice", "temp", [(ts, ts)])
        sql = "SELECT count(*) FROM bucket_points WHERE ts = ?"
        return bool(reader.execute(sql, (ts,)).fetchone()[0])

    try:
        seen = await asyncio.gather(*(write_then_look(ts) for ts in range(200)))
    finally:
        reader.close()
    assert all(seen)


async def test_the_wal_is_copied_into_the_database_file_while_the_store_runs(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """Checkpoints run off the writer, as writes come: far fewer pages than SQLite's own
    auto-checkpoint mark reach the database file, not just the WAL, without a close."""
    await _with_bucket(store)
    database = tmp_path / "roost.db"
    before = database.stat().st_size
    await store.write_points("alice", "temp", [(ts, "x" * 100) for ts in range(4000)])
    deadline = asyncio.get_running_loop().time() + 10
    while database.stat().st_size < before + 300_000:  # about 120 pages of 4 KiB
        assert asyncio.get_running_loop().time() < deadline, "no checkpoint"
        await asyncio.sleep(0.02)
