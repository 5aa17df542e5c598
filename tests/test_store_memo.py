"""The records the SQLite store keeps for the authorization path and the bucket feeds (the memo
store contract, on a file another process may write too), and the memo itself."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from roost.auth.permissions import ParsedPermissions, Permissions
from roost.store.memo import Memo
from roost.store.sqlite import SQLiteStore

if str(Path(__file__).parent) not in sys.path:  # the contract helpers sit next to this module
    sys.path.insert(0, str(Path(__file__).parent))

from memo_store_contract import *  # noqa: F403
from store_contract import _access


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., SQLiteStore]:
    """Stores on one file: another one stands for another process."""
    return partial(SQLiteStore, tmp_path / "roost.db")


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
