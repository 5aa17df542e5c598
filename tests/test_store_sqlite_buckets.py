"""SQLiteStore: the bucket part of the Store contract, plus what only a file on disk can show."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
