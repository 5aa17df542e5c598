"""PostgresStore: the bucket part of the Store contract (points and their aggregation)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from bucket_aggregate_contract import *  # noqa: F403
from bucket_store_contract import *  # noqa: F403
from bucket_store_contract import _with_bucket


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
