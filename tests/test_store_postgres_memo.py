"""The token records the PostgreSQL store keeps for the authorization path, as the SQLite store
does: never older than this node's own writes, another node's writes seen within the memo time,
and kept meanwhile (a read that does not reach the database)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.store.postgres import PostgresStore

if str(Path(__file__).parent) not in sys.path:  # the contract helpers sit next to this module
    sys.path.insert(0, str(Path(__file__).parent))

from test_store_memo import (
    test_a_deleted_token_is_gone_at_once,
    test_a_read_that_overlaps_a_delete_is_not_kept,
    test_an_updated_access_token_is_read_anew,
    test_deleting_a_device_forgets_its_kept_tokens,
)

from store_contract import _access, _device, _token, _user

__all__ = [
    "test_a_deleted_token_is_gone_at_once",
    "test_a_read_that_overlaps_a_delete_is_not_kept",
    "test_an_updated_access_token_is_read_anew",
    "test_deleting_a_device_forgets_its_kept_tokens",
]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    await opened.open()
    await opened.create_user(_user("alice"))
    await opened.create_device(_device())
    yield opened
    await opened.close()


async def test_another_node_is_seen_within_the_memo_time_and_kept_meanwhile(
    postgres_url: str,
) -> None:
    node = PostgresStore(postgres_url, token_memo_seconds=0.3)
    other = PostgresStore(postgres_url)
    await node.open()
    await other.open()
    try:
        await node.create_user(_user("alice"))
        await node.create_device(_device())
        await node.create_access_token(_access("t1"))
        await node.create_device_token(_token("d1"))
        assert await node.get_access_token("alice", "t1") is not None
        assert await node.get_device_token("d1") is not None
        assert await other.delete_access_token("alice", "t1")
        assert await other.delete_device_token("alice", "dev1", "d1")
        # kept: the node answers from its memo, without the database
        assert await node.get_access_token("alice", "t1") is not None
        assert await node.get_device_token("d1") is not None
        await asyncio.sleep(0.35)  # the memo time is what is tested: no event to await
        assert await node.get_access_token("alice", "t1") is None
        assert await node.get_device_token("d1") is None
    finally:
        await other.close()
        await node.close()
