"""The records the PostgreSQL store keeps for the authorization path and the bucket feeds: the
memo store contract, plus reads that overlap a write another connection holds up."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract helpers sit next to this module
    sys.path.insert(0, str(Path(__file__).parent))

from bucket_store_contract import _bucket
from memo_store_contract import *  # noqa: F403
from store_contract import _access


@pytest.fixture
def make_store(postgres_url: str) -> Callable[..., PostgresStore]:
    """Stores on one database: another one stands for another node."""
    return partial(PostgresStore, postgres_url)


async def _while_held(postgres_url: str, lock: str, write: Awaitable[Any], read: Any) -> None:
    """Runs ``write`` while another connection holds the row it changes (``lock``: a SELECT ...
    FOR UPDATE), and ``read`` once the write waits for it: the read sees the row as it was."""
    holder = await asyncpg.connect(postgres_url)
    try:
        tx = holder.transaction()
        await tx.start()
        assert await holder.fetchval(lock) == 1
        pending = asyncio.ensure_future(write)
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))"
        for _ in range(500):  # bounded: until the write waits for the held row
            if await holder.fetchval(waiting, holder.get_server_pid()):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the write never waited for the held row")
        await read()
        await tx.rollback()
        await pending
    finally:
        await holder.close()


async def test_a_read_while_a_bucket_update_is_on_its_way_is_not_kept(
    store: PostgresStore, postgres_url: str
) -> None:
    """The API reloads a bucket's feed right after updating it: the record it reads then must be
    the updated one, though a read that started meanwhile saw the old row."""
    await store.create_bucket(_bucket())
    assert (await store.get_bucket("alice", "temp")) is not None

    async def read_old() -> None:
        kept = await store.get_bucket("alice", "temp")
        assert kept is not None and kept.enabled

    async def read_disabled() -> None:
        kept = await store.get_bucket("alice", "temp")
        assert kept is not None and not kept.enabled

    lock = "SELECT 1 FROM buckets WHERE owner = 'alice' AND bucket = 'temp' FOR UPDATE"
    disabled = dataclasses.replace(_bucket(), enabled=False)
    await _while_held(postgres_url, lock, store.update_bucket(disabled), read_old)
    updated = await store.get_bucket("alice", "temp")
    assert updated is not None and not updated.enabled

    await _while_held(postgres_url, lock, store.delete_bucket("alice", "temp"), read_disabled)
    assert await store.get_bucket("alice", "temp") is None


async def test_a_read_while_a_token_delete_is_on_its_way_is_not_kept(
    store: PostgresStore, postgres_url: str
) -> None:
    """A deleted token must stop authenticating once its delete returned, though a read that
    started meanwhile saw it."""
    await store.create_access_token(_access("t1"))

    async def read_old() -> None:
        assert await store.get_access_token("alice", "t1") is not None

    lock = "SELECT 1 FROM access_tokens WHERE owner = 'alice' AND token = 't1' FOR UPDATE"
    await _while_held(postgres_url, lock, store.delete_access_token("alice", "t1"), read_old)
    assert await store.get_access_token("alice", "t1") is None
