"""The Store contract for the records a store keeps for the authorization path (tokens) and the
bucket feeds: never older than this node's own writes, kept while another node's writes are not
yet heard of, and seen once the memo time passes or the bus says the database changed.

A module per implementation provides a ``make_store`` fixture: a callable that makes a store
(not yet open) on the test's database, given store settings as keywords. It imports these tests
and their fixtures with ``import *`` (``test_store_memo.py``, ``test_store_postgres_memo.py``):
``store``, open and holding user ``alice`` and device ``dev1``, and ``open_store``:
``await open_store(token_memo_seconds=..., ...)`` opens one more store on the same database
(another node), closed after the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from roost.store import Store

from bucket_store_contract import _bucket
from store_contract import _access, _device, _token, _user

_OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture
async def store(make_store: Callable[..., Store]) -> AsyncIterator[Store]:
    opened = make_store()
    await opened.open()
    await opened.create_user(_user("alice"))
    await opened.create_device(_device())
    yield opened
    await opened.close()


@pytest.fixture
async def open_store(store: Store, make_store: Callable[..., Store]) -> AsyncIterator[_OpenStore]:
    """Another node's store on the same database, as many as a test opens."""
    opened: list[Store] = []

    async def open_another(**settings: Any) -> Store:
        another = make_store(**settings)
        await another.open()
        opened.append(another)
        return another

    yield open_another
    for another in opened:
        await another.close()


async def _enabled(store: Store, bucket: str) -> bool:
    record = await store.get_bucket("alice", bucket)
    assert record is not None
    return record.enabled


async def test_an_updated_access_token_is_read_anew(store: Store) -> None:
    await store.create_access_token(_access("t1"))
    assert await store.get_access_token("alice", "t1") == _access("t1")  # now kept
    edited = dataclasses.replace(_access("t1"), enabled=False, allow={}, modified=2)
    await store.update_access_token(edited)
    assert await store.get_access_token("alice", "t1") == edited


async def test_a_deleted_token_is_gone_at_once(store: Store) -> None:
    await store.create_access_token(_access("t1"))
    await store.create_device_token(_token("d1"))
    assert await store.get_access_token("alice", "t1") is not None
    assert await store.get_device_token("d1") is not None
    assert await store.delete_access_token("alice", "t1")
    assert await store.delete_device_token("alice", "dev1", "d1")
    assert await store.get_access_token("alice", "t1") is None
    assert await store.get_device_token("d1") is None


async def test_deleting_a_device_forgets_its_kept_tokens(store: Store) -> None:
    await store.create_device_token(_token("d1"))
    assert await store.get_device_token("d1") is not None
    assert await store.delete_device("alice", "dev1")
    assert await store.get_device_token("d1") is None


async def test_a_read_that_overlaps_a_delete_is_not_kept(store: Store) -> None:
    await store.create_access_token(_access("t1"))
    for _ in range(20):  # the read is submitted first, the delete right behind it
        await store.create_access_token(_access("t2"))
        read = asyncio.ensure_future(store.get_access_token("alice", "t2"))
        await asyncio.sleep(0)
        assert await store.delete_access_token("alice", "t2")
        await read  # whatever it saw, it must not be served from now on
        assert await store.get_access_token("alice", "t2") is None


async def test_another_nodes_deletes_are_seen_within_the_memo_time(
    store: Store, open_store: _OpenStore
) -> None:
    node = await open_store(token_memo_seconds=0.2)
    await store.create_access_token(_access("t1"))
    await store.create_device_token(_token("d1"))
    assert await node.get_access_token("alice", "t1") is not None
    assert await node.get_device_token("d1") is not None
    assert await store.delete_access_token("alice", "t1")
    assert await store.delete_device_token("alice", "dev1", "d1")
    await asyncio.sleep(0.25)  # the memo time is what is tested: no event to await
    assert await node.get_access_token("alice", "t1") is None
    assert await node.get_device_token("d1") is None


async def test_a_change_elsewhere_drops_the_kept_records_at_once(
    store: Store, open_store: _OpenStore
) -> None:
    """Another node changed the database and said so on the bus: the next read sees it. Until
    then the node answers from what it kept, without the database."""
    node = await open_store(token_memo_seconds=60, bucket_memo_seconds=60)
    await store.create_access_token(_access("t1"))
    await store.create_device_token(_token("d1"))
    await store.create_bucket(_bucket())
    assert await node.get_access_token("alice", "t1") is not None
    assert await node.get_device_token("d1") is not None
    assert await _enabled(node, "temp")
    assert await store.delete_access_token("alice", "t1")
    assert await store.delete_device_token("alice", "dev1", "d1")
    await store.update_bucket(dataclasses.replace(_bucket(), enabled=False))
    assert await node.get_access_token("alice", "t1") is not None  # kept, for 60 s
    assert await node.get_device_token("d1") is not None
    assert await _enabled(node, "temp")
    node.changed_elsewhere()
    assert await node.get_access_token("alice", "t1") is None
    assert await node.get_device_token("d1") is None
    assert not await _enabled(node, "temp")
