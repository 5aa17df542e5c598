"""Point writes of the PostgreSQL store, in groups: every write queued while the previous group
was in flight goes into ONE transaction (:class:`roost.store.group_commit.AsyncGroupCommit`),
each write all or none.

A group is a few statements whatever its size: take a transaction-scoped advisory lock per
bucket written (so that no other node's group picks the same free ts meanwhile) and learn which
buckets exist; read the taken ts the writes that must not replace a point could land on; pick
their ts here; then one INSERT of every row (over arrays: ``unnest``). A write into a bucket that
does not exist, or with no free ts within ``FREE_TS_STEPS`` ms, fails alone, found before any
row is written. Should the database refuse a row nonetheless (a value it cannot hold, a bucket
deleted meanwhile), the group runs again with each write in a savepoint of its own, so that only
the writes refused fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from roost.errors import Conflict, InvalidInput, NotFound, RoostError
from roost.store.point_writes import FREE_TS_STEPS, TS_MAX, PointWrite
from roost.store.postgres_queries import Conn
from roost.store.postgres_sql import count, invalid

# one lock per bucket, held to the commit; the first column tells whether the bucket exists
_LOCK = (
    "SELECT EXISTS (SELECT 1 FROM buckets WHERE owner = u.o AND bucket = u.b),"
    " pg_advisory_xact_lock(hashtextextended(u.o || '/' || u.b, 0))::text"
    " FROM unnest($1::text[], $2::text[]) AS u (o, b)"
)
_TAKEN = (
    "SELECT p.owner, p.bucket, p.ts"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u (o, b, lo, hi)"
    " JOIN bucket_points AS p ON p.owner = u.o AND p.bucket = u.b AND p.ts BETWEEN u.lo AND u.hi"
)
_INSERT = "INSERT INTO bucket_points (owner, bucket, ts, value) SELECT * FROM unnest"
# the rows at a ts found free ($1-$4: the statement's count), and the replacing rows ($5-$8)
_WRITE = (
    f"WITH replaced AS ({_INSERT} ($5::text[], $6::text[], $7::bigint[], $8::json[])"
    " ON CONFLICT (owner, bucket, ts) DO UPDATE SET value = EXCLUDED.value)"
    f" {_INSERT} ($1::text[], $2::text[], $3::bigint[], $4::json[])"
    " ON CONFLICT (owner, bucket, ts) DO NOTHING"
)

_Key = tuple[str, str]


class _Taken(Exception):
    """A ts found free was taken when written (a writer that takes no lock)."""


# what fails one write and not the others
_REFUSALS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, _Taken)


async def write_points(conn: Conn, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    """Every write in ONE transaction (one commit for all), each all or none: for each write in
    order, None or why it was refused (then none of its rows is written). Errors of the database
    itself (gone, a timeout) raise, and nothing is committed."""
    try:
        async with conn.transaction():
            return await _write(conn, writes)
    except _REFUSALS as exc:
        if len(writes) == 1:
            return [_refusal(writes[0], exc)]
    outcomes: list[RoostError | None] = []
    async with conn.transaction():
        for write in writes:
            try:
                async with conn.transaction():  # a savepoint: this write alone rolls back
                    outcomes += await _write(conn, [write])
            except _REFUSALS as exc:
                outcomes.append(_refusal(write, exc))
    return outcomes


def _refusal(write: PointWrite, exc: BaseException) -> RoostError:
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound(f"bucket {write.bucket!r} of {write.owner!r} does not exist")
    if isinstance(exc, _Taken | asyncpg.UniqueViolationError):
        return Conflict(f"a point of bucket {write.bucket!r} was written meanwhile at its ts")
    return InvalidInput(invalid(exc))


async def _write(conn: Conn, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    keys = sorted({(write.owner, write.bucket) for write in writes})  # one lock order for all
    found = await conn.fetch(_LOCK, [o for o, _ in keys], [b for _, b in keys])
    present = {key for key, (exists, _) in zip(keys, found, strict=True) if exists}
    taken = await _taken(
        conn, [w for w in writes if not w.replace and (w.owner, w.bucket) in present]
    )
    outcomes: list[RoostError | None] = []
    rows: dict[tuple[str, str, int], tuple[str, bool]] = {}  # the later write of a ts wins
    hints: dict[tuple[str, str, int], int] = {}  # ts -> the last ts its writes took
    for write in writes:
        key = (write.owner, write.bucket)
        if key not in present:
            outcomes.append(NotFound(f"bucket {write.bucket!r} of {write.owner!r} does not exist"))
            continue
        taken_here = taken.setdefault(key, set())
        if write.replace:
            for owner, bucket, ts, value in write.rows:
                rows[owner, bucket, ts] = (value, True)
                taken_here.add(ts)
            outcomes.append(None)
            continue
        chosen = _free_ts(write, taken_here, hints)
        if chosen is None:
            ts = write.rows[0][2]
            outcomes.append(
                Conflict(
                    f"bucket {write.bucket!r} holds points at {FREE_TS_STEPS} ms in a row from {ts}"
                )
            )
            continue
        for (owner, bucket, _, value), ts in zip(write.rows, chosen, strict=True):
            rows[owner, bucket, ts] = (value, False)
        outcomes.append(None)
    await _insert(conn, rows)
    return outcomes


async def _taken(conn: Conn, writes: Sequence[PointWrite]) -> dict[_Key, set[int]]:
    """The taken ts of each bucket in the span its writes' free ts may be sought in."""
    spans: dict[_Key, tuple[int, int]] = {}
    for write in writes:
        for owner, bucket, ts, _ in write.rows:
            lo, hi = spans.get((owner, bucket), (ts, ts))
            spans[owner, bucket] = (min(lo, ts), max(hi, ts))
    taken: dict[_Key, set[int]] = {key: set() for key in spans}
    if not spans:
        return taken
    reach = [(o, b, lo, min(hi + FREE_TS_STEPS, TS_MAX)) for (o, b), (lo, hi) in spans.items()]
    for owner, bucket, ts in await conn.fetch(_TAKEN, *_columns(reach)):
        taken[owner, bucket].add(ts)
    return taken


def _free_ts(
    write: PointWrite, taken: set[int], hints: dict[tuple[str, str, int], int]
) -> list[int] | None:
    """For each row, the first ts from its own not taken (marked taken); None (nothing marked)
    when one finds none within FREE_TS_STEPS."""
    chosen: list[int] = []
    for owner, bucket, ts, _ in write.rows:
        free = max(ts, hints.get((owner, bucket, ts), ts - 1) + 1)  # [ts, hint] are taken
        limit = min(ts + FREE_TS_STEPS, TS_MAX + 1)
        while free < limit and free in taken:
            free += 1
        if free >= limit:
            taken.difference_update(chosen)
            hints.clear()  # they may count the ts given back
            return None
        taken.add(free)
        hints[owner, bucket, ts] = free
        chosen.append(free)
    return chosen


async def _insert(conn: Conn, rows: dict[tuple[str, str, int], tuple[str, bool]]) -> None:
    if not rows:
        return
    free = [(*key, value) for key, (value, replace) in rows.items() if not replace]
    replacing = [(*key, value) for key, (value, replace) in rows.items() if replace]
    if count(await conn.execute(_WRITE, *_columns(free), *_columns(replacing))) != len(free):
        raise _Taken


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Four arrays (owner, bucket, ts, and value or a bound) of the rows, for ``unnest``."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], [], []]
