"""A device's bucket writes sent together (roost.devices.buckets.write_many): one bucket whose
store write fails does not make the writes committed to the other buckets fail."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from roost.bus.base import DeviceKey
from roost.devices.buckets import STORE_FAILED, write_many
from roost.store import User
from roost.store.base import Bucket
from roost.store.sqlite import SQLiteStore

T0 = 1_700_000_000_000


class FailingStore(SQLiteStore):
    """A store whose writes into bucket ``broken`` fail as a store that lost its disk would."""

    async def write_points(
        self, owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
    ) -> None:
        if bucket == "broken":
            raise OSError("disk I/O error")
        await super().write_points(owner, bucket, points, replace)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FailingStore]:
    opened = FailingStore(tmp_path / "roost.db")
    await opened.open()
    await opened.create_user(User("alice", "$argon2id$h", "user", T0))
    for name in ("good", "broken"):
        config = {"source": "write"}
        await opened.create_bucket(Bucket("alice", name, name, "", True, config, None, T0, T0))
    yield opened
    await opened.close()


async def test_a_failing_bucket_fails_its_writes_alone(store: FailingStore) -> None:
    writes = [("good", {"v": 1}), ("broken", {"v": 2}), ("good", {"v": 3}), ("absent", {"v": 4})]
    outcomes = await write_many(store, DeviceKey("alice", "dev1"), writes, T0)
    assert outcomes == [None, STORE_FAILED, None, "no bucket 'absent'"]
    stored = await store.read_points("alice", "good", None, None, 10, descending=False)
    assert [p.value for p in stored] == [{"v": 1}, {"v": 3}]
