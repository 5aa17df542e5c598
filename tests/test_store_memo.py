"""The token records the SQLite store keeps for the authorization path: never older than this
process's own writes, and another process's writes seen within the memo's time."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.auth.permissions import ParsedPermissions, Permissions
from roost.store.base import Bucket
from roost.store.memo import Memo
from roost.store.sqlite import SQLiteStore

if str(Path(__file__).parent) not in sys.path:  # the contract helpers sit next to this module
    sys.path.insert(0, str(Path(__file__).parent))

from store_contract import _access, _device, _token, _user


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "roost.db")
    await opened.open()
    await opened.create_user(_user("alice"))
    await opened.create_device(_device())
    yield opened
    await opened.close()


async def test_an_updated_access_token_is_read_anew(store: SQLiteStore) -> None:
    await store.create_access_token(_access("t1"))
    assert await store.get_access_token("alice", "t1") == _access("t1")  # now kept
    edited = dataclasses.replace(_access("t1"), enabled=False, allow={}, modified=2)
    await store.update_access_token(edited)
    assert await store.get_access_token("alice", "t1") == edited


async def test_a_deleted_token_is_gone_at_once(store: SQLiteStore) -> None:
    await store.create_access_token(_access("t1"))
    await store.create_device_token(_token("d1"))
    assert await store.get_access_token("alice", "t1") is not None
    assert await store.get_device_token("d1") is not None
    assert await store.delete_access_token("alice", "t1")
    assert await store.delete_device_token("alice", "dev1", "d1")
    assert await store.get_access_token("alice", "t1") is None
    assert await store.get_device_token("d1") is None


async def test_deleting_a_device_forgets_its_kept_tokens(store: SQLiteStore) -> None:
    await store.create_device_token(_token("d1"))
    assert await store.get_device_token("d1") is not None
    assert await store.delete_device("alice", "dev1")
    assert await store.get_device_token("d1") is None


async def test_a_read_that_overlaps_a_delete_is_not_kept(store: SQLiteStore) -> None:
    await store.create_access_token(_access("t1"))
    for _ in range(20):  # the read is submitted first, the delete right behind it
        await store.create_access_token(_access("t2"))
        read = asyncio.ensure_future(store.get_access_token("alice", "t2"))
        await asyncio.sleep(0)
        assert await store.delete_access_token("alice", "t2")
        await read  # whatever it saw, it must not be served from now on
        assert await store.get_access_token("alice", "t2") is None


async def test_another_process_writing_the_file_is_seen_within_the_memo_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    server = SQLiteStore(path, token_memo_seconds=0.2)
    admin = SQLiteStore(path)
    await server.open()
    await admin.open()
    try:
        await server.create_user(_user("alice"))
        await server.create_access_token(_access("t1"))
        assert await server.get_access_token("alice", "t1") is not None
        assert await admin.delete_access_token("alice", "t1")
        await asyncio.sleep(0.25)
        assert await server.get_access_token("alice", "t1") is None
    finally:
        await admin.close()
        await server.close()


async def test_a_change_elsewhere_drops_the_kept_records_at_once(tmp_path: Path) -> None:
    """Another node changed the database and said so on the bus: the next read sees it."""
    path = tmp_path / "shared.db"
    node = SQLiteStore(path, token_memo_seconds=60)
    other = SQLiteStore(path)
    await node.open()
    await other.open()
    try:
        await node.create_user(_user("alice"))
        await node.create_access_token(_access("t1"))
        assert await node.get_access_token("alice", "t1") is not None
        assert await other.delete_access_token("alice", "t1")
        assert await node.get_access_token("alice", "t1") is not None  # kept, for 60 s
        bucket = Bucket("alice", "b1", "b1", "", True, {"source": "write"}, None, 0, 0)
        await node.create_bucket(bucket)
        assert (await node.get_bucket("alice", "b1")).enabled  # type: ignore[union-attr]
        await other.update_bucket(dataclasses.replace(bucket, enabled=False))
        assert (await node.get_bucket("alice", "b1")).enabled  # type: ignore[union-attr]
        node.changed_elsewhere()
        assert await node.get_access_token("alice", "t1") is None
        assert not (await node.get_bucket("alice", "b1")).enabled  # type: ignore[union-attr]
    finally:
        await other.close()
        await node.close()


def test_memo_entries_expire_and_stay_bounded() -> None:
    now = [0.0]
    memo: Memo[str, int] = Memo(ttl=2.0, limit=3, clock=lambda: now[0])
    memo.put("a", 1, memo.generation)
    assert memo.get("a") == 1
    now[0] = 2.0
    assert memo.get("a") is None  # expired
    for key in ("a", "b", "c", "d"):  # the fourth starts afresh
        memo.put(key, 1, memo.generation)
    assert [memo.get(k) for k in ("a", "b", "c", "d")] == [None, None, None, 1]


def test_memo_drops_a_value_read_before_an_invalidation() -> None:
    memo: Memo[str, int] = Memo(ttl=2.0)
    started = memo.generation
    memo.invalidate()
    memo.put("a", 1, started)
    assert memo.get("a") is None
    assert Memo[str, int](ttl=0).get("a") is None


def test_permissions_are_parsed_once_per_record() -> None:
    parsed = ParsedPermissions()
    record = _access("t1")
    first = parsed.of(("alice", "t1"), record, record.allow, record.deny)
    assert parsed.of(("alice", "t1"), record, record.allow, record.deny) is first
    changed = dataclasses.replace(record, allow={"Device": {"*": ["*"]}})
    again = parsed.of(("alice", "t1"), changed, changed.allow, changed.deny)
    assert again == Permissions.parse(changed.allow, changed.deny) and again is not first
