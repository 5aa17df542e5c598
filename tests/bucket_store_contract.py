"""The Store contract for data buckets and their points, as plain async tests.

A module per implementation provides an open, empty ``store`` fixture and imports these tests
with ``import *`` (``test_store_sqlite_buckets.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from roost.errors import Conflict, InvalidInput, NotFound
from roost.store import Store, User
from roost.store.base import Bucket, BucketPoint, Page

_T0 = 1_700_000_000_000  # ms


def _bucket(bucket: str = "temp", owner: str = "alice", **changes: object) -> Bucket:
    base = Bucket(
        owner=owner,
        bucket=bucket,
        name=f"{bucket} name",
        description="kitchen temperature",
        enabled=True,
        config={"source": "write"},
        retention={"period": 3, "unit": "months"},
        created=_T0,
        modified=_T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def _with_bucket(store: Store, bucket: str = "temp", owner: str = "alice") -> Bucket:
    if await store.get_user(owner) is None:
        await store.create_user(User(owner, "$argon2id$h", "user", _T0))
    record = _bucket(bucket, owner)
    await store.create_bucket(record)
    return record


async def test_bucket_round_trips(store: Store) -> None:
    made = await _with_bucket(store)
    assert await store.get_bucket("alice", "temp") == made
    assert await store.get_bucket("alice", "other") is None
    assert await store.get_bucket("bob", "temp") is None


async def test_bucket_of_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_bucket(_bucket(owner="nobody"))


async def test_duplicate_bucket_conflicts_and_keeps_the_first(store: Store) -> None:
    first = await _with_bucket(store)
    with pytest.raises(Conflict):
        await store.create_bucket(_bucket(name="second"))
    assert await store.get_bucket("alice", "temp") == first


async def test_list_buckets_is_ordered_by_id_and_scoped(store: Store) -> None:
    for bucket in ("b", "c", "a"):
        await _with_bucket(store, bucket)
    await _with_bucket(store, "z", owner="bob")
    assert [b.bucket for b in await store.list_buckets("alice")] == ["a", "b", "c"]
    assert [b.bucket for b in await store.list_buckets("bob")] == ["z"]


async def test_update_bucket_replaces_mutable_fields_only(store: Store) -> None:
    await _with_bucket(store)
    changed = _bucket(
        name="new",
        description="",
        enabled=False,
        config={"source": "device", "device": "d1", "resource": "t", "update": "events"},
        retention=None,
        created=_T0 + 5,  # not changed by an update
        modified=_T0 + 9,
    )
    await store.update_bucket(changed)
    assert await store.get_bucket("alice", "temp") == dataclasses.replace(changed, created=_T0)
    with pytest.raises(NotFound):
        await store.update_bucket(_bucket("absent"))


async def test_points_read_by_time_range_in_either_order(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0 + i, {"t": i}) for i in range(10)])
    got = await store.read_points("alice", "temp", _T0 + 2, _T0 + 5, 100)
    assert got == [BucketPoint(_T0 + i, {"t": i}) for i in (2, 3, 4, 5)]
    latest = await store.read_points("alice", "temp", None, None, 3, descending=True)
    assert [p.ts for p in latest] == [_T0 + 9, _T0 + 8, _T0 + 7]
    assert len(await store.read_points("alice", "temp", None, None, 1000)) == 10


async def test_a_point_at_the_same_ts_replaces_the_first(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0, 1), (_T0 + 1, 2)])
    await store.write_points("alice", "temp", [(_T0, [1, "x", None])])
    got = await store.read_points("alice", "temp", None, None, 10)
    assert got == [BucketPoint(_T0, [1, "x", None]), BucketPoint(_T0 + 1, 2)]


async def test_points_are_scoped_to_their_bucket_and_owner(store: Store) -> None:
    await _with_bucket(store, "a")
    await _with_bucket(store, "b")
    await _with_bucket(store, "a", owner="bob")
    await store.write_points("alice", "a", [(_T0, "alice a")])
    await store.write_points("bob", "a", [(_T0, "bob a")])
    assert await store.read_points("alice", "b", None, None, 10) == []
    assert await store.read_points("bob", "a", None, None, 10) == [BucketPoint(_T0, "bob a")]


async def test_writing_to_an_unknown_bucket_is_not_found_and_stores_nothing(store: Store) -> None:
    await _with_bucket(store)
    with pytest.raises(NotFound):
        await store.write_points("alice", "absent", [(_T0, 1)])
    assert await store.read_points("alice", "absent", None, None, 10) == []


async def test_a_point_that_cannot_be_stored_leaves_the_whole_write_out(store: Store) -> None:
    await _with_bucket(store)
    with pytest.raises((InvalidInput, ValueError)):
        await store.write_points("alice", "temp", [(_T0, 1), (_T0 + 1, float("nan"))])
    with pytest.raises(InvalidInput):
        await store.write_points("alice", "temp", [(_T0, 1), (2**70, 2)])
    assert await store.read_points("alice", "temp", None, None, 10) == []


async def test_deleting_a_bucket_deletes_its_points(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0, 1)])
    assert await store.delete_bucket("alice", "temp")
    assert not await store.delete_bucket("alice", "temp")
    await _with_bucket(store)  # the same id again starts empty
    assert await store.read_points("alice", "temp", None, None, 10) == []


async def test_delete_points_clears_a_range_or_all(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0 + i, i) for i in range(10)])
    assert await store.delete_points("alice", "temp", _T0 + 3, _T0 + 5) == 3
    left = await store.read_points("alice", "temp", None, None, 100)
    assert [p.value for p in left] == [0, 1, 2, 6, 7, 8, 9]
    assert await store.delete_points("alice", "temp", None, None) == 7
    assert await store.read_points("alice", "temp", None, None, 100) == []


async def test_concurrent_point_writes_all_land(store: Store) -> None:
    await _with_bucket(store)
    await asyncio.gather(*(store.write_points("alice", "temp", [(_T0 + i, i)]) for i in range(50)))
    assert len(await store.read_points("alice", "temp", None, None, 100)) == 50


async def test_list_buckets_pages_and_filters_by_id_or_name(store: Store) -> None:
    for bucket in ("a1", "b2", "c3", "d4"):
        await _with_bucket(store, bucket)
    await store.update_bucket(_bucket("d4", name="Kitchen", modified=_T0 + 1))
    two = await store.list_buckets("alice", Page(count=2, index=1))
    assert [b.bucket for b in two] == ["b2", "c3"]
    assert [b.bucket for b in await store.list_buckets("alice", Page(name="KITCH"))] == ["d4"]
    assert [b.bucket for b in await store.list_buckets("alice", Page(name="b"))] == ["b2"]


async def test_a_point_that_must_not_replace_takes_the_next_free_ts(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0, "first"), (_T0 + 2, "third")])
    await store.write_points("alice", "temp", [(_T0, "a"), (_T0, "b")], replace=False)
    got = await store.read_points("alice", "temp", None, None, 10)
    assert got == [
        BucketPoint(_T0, "first"),
        BucketPoint(_T0 + 1, "a"),
        BucketPoint(_T0 + 2, "third"),
        BucketPoint(_T0 + 3, "b"),
    ]


async def test_device_source_buckets_are_listed_across_users_when_enabled(store: Store) -> None:
    device = {"source": "device", "device": "d1", "resource": "t", "update": "interval"}
    for owner, bucket in (("bob", "b"), ("alice", "z"), ("alice", "a"), ("alice", "off")):
        await _with_bucket(store, bucket, owner)
        await store.update_bucket(
            _bucket(bucket, owner, config={**device, "interval": 5}, enabled=bucket != "off")
        )
    await _with_bucket(store, "written")  # source write: not listed
    listed = await store.list_device_source_buckets()
    assert [(b.owner, b.bucket) for b in listed] == [("alice", "a"), ("alice", "z"), ("bob", "b")]
    assert listed[0].config == {**device, "interval": 5}


async def test_many_concurrent_writes_to_several_buckets_all_land(store: Store) -> None:
    for bucket in ("a", "b", "c"):
        await _with_bucket(store, bucket)
    writes = [
        store.write_points("alice", "abc"[i % 3], [(_T0 + i // 3, i)], replace=i % 2 == 0)
        for i in range(300)
    ]
    # and some writes of many points, as the API makes them
    writes += [
        store.write_points("alice", "a", [(_T0 + 1000 + 10 * k + j, j) for j in range(10)])
        for k in range(10)
    ]
    await asyncio.gather(*writes)
    for bucket, expected in (("a", 100 + 100), ("b", 100), ("c", 100)):
        assert len(await store.read_points("alice", bucket, None, None, 1000)) == expected


async def test_a_failing_write_among_concurrent_ones_fails_alone(store: Store) -> None:
    await _with_bucket(store)
    writes = [store.write_points("alice", "temp", [(_T0 + i, i)], replace=False) for i in range(40)]
    writes.insert(10, store.write_points("alice", "absent", [(_T0, "lost")]))
    writes.insert(20, store.write_points("alice", "temp", [(_T0 + 99, 1), (_T0, float("nan"))]))
    writes.insert(30, store.write_points("bob", "temp", [(_T0, "no such owner")]))
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(outcomes.pop(30), NotFound)
    assert isinstance(outcomes.pop(20), (InvalidInput, ValueError))
    assert isinstance(outcomes.pop(10), NotFound)
    assert outcomes == [None] * 40
    got = await store.read_points("alice", "temp", None, None, 100)
    assert got == [BucketPoint(_T0 + i, i) for i in range(40)]  # not the failed ones' points


async def test_a_bucket_read_again_shows_this_store_s_changes_at_once(store: Store) -> None:
    """Records may be kept for the write path: never past a change made through this store."""
    made = await _with_bucket(store)
    assert await store.get_bucket("alice", "temp") == made
    disabled = dataclasses.replace(made, enabled=False, modified=_T0 + 1)
    await store.update_bucket(disabled)
    assert await store.get_bucket("alice", "temp") == disabled
    assert await store.delete_bucket("alice", "temp")
    assert await store.get_bucket("alice", "temp") is None
    again = await _with_bucket(store)
    assert await store.get_bucket("alice", "temp") == again


async def test_a_point_that_must_not_replace_fills_the_first_gap_within_1000_ms(
    store: Store,
) -> None:
    await _with_bucket(store)
    # taken: T0 .. T0+499 and T0+501 .. T0+999; free: T0+500, then T0+1000 on
    taken = [(_T0 + i, i) for i in range(1000) if i != 500]
    await store.write_points("alice", "temp", taken)
    await store.write_points("alice", "temp", [(_T0, "gap")], replace=False)
    assert await store.read_points("alice", "temp", _T0 + 500, _T0 + 500, 1) == [
        BucketPoint(_T0 + 500, "gap")
    ]
    # now 1000 ms in a row from T0 are taken: refused, and the bucket is as it was
    with pytest.raises(Conflict):
        await store.write_points("alice", "temp", [(_T0, "none")], replace=False)
    await store.write_points("alice", "temp", [(_T0 + 1, "next")], replace=False)
    assert await store.read_points("alice", "temp", _T0 + 1000, None, 5) == [
        BucketPoint(_T0 + 1000, "next")
    ]
    assert len(await store.read_points("alice", "temp", None, None, 2000)) == 1001


async def test_a_burst_of_writes_at_one_ts_takes_the_first_free_ones(store: Store) -> None:
    await _with_bucket(store)
    await store.write_points("alice", "temp", [(_T0 + 10, "there"), (_T0 + 60, "later")])
    burst = [store.write_points("alice", "temp", [(_T0, n)], replace=False) for n in range(50)]
    await asyncio.gather(*burst)
    got = await store.read_points("alice", "temp", None, None, 100)
    assert [p.ts for p in got] == [_T0 + i for i in range(51)] + [_T0 + 60]
    assert sorted(p.value for p in got if p.value not in ("there", "later")) == list(range(50))
