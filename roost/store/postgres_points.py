"""Point writes of the PostgreSQL store, in groups: every write queued while the previous group
was in flight goes into ONE transaction (:class:`roost.store.group_commit.AsyncGroupCommit`),
each write all or none.

A group is two statements in a transaction whatever its size: one takes a transaction-scoped
advisory lock per bucket written (so that no other node's group picks the same free ts
meanwhile), learns which buckets exist and reads the taken ts the writes that must not replace a
point could land on; the ts are picked here; then one INSERT of every row (over arrays:
``unnest``). A write into a bucket that
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

# per bucket written: a lock held to the commit (no other node's group picks the same free ts
# meanwhile), whether it exists, and its taken ts in [lo, hi] (NULL: none asked for). The ts are
# read in the statement's snapshot, which may predate the lock (READ COMMITTED): a ts another
# node took in between is found by the insert, and the group runs again, the ts read anew
_FIND = (
    "SELECT pg_advisory_xact_lock(hashtextextended(u.o || '/' || u.b, 0))::text,"
    " EXISTS (SELECT 1 FROM buckets WHERE owner = u.o AND bucket = u.b),"
    " ARRAY (SELECT ts FROM bucket_points WHERE owner = u.o AND bucket = u.b"
    " AND ts BETWEEN u.lo AND u.hi)"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u (o, b, lo, hi)"
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
            return await _write(conn, writes, locked_first=False)
    except _REFUSALS as exc:
        if len(writes) == 1 and not isinstance(exc, _Taken):
            return [_refusal(writes[0], exc)]
    outcomes: list[RoostError | None] = []
    async with conn.transaction():
        for write in writes:
            try:
                async with conn.transaction():  # a savepoint: this write alone rolls back
                    outcomes += await _write(conn, [write], locked_first=True)
            except _REFUSALS as exc:
                outcomes.append(_refusal(write, exc))
    return outcomes


def _refusal(write: PointWrite, exc: BaseException) -> RoostError:
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound(f"bucket {write.bucket!r} of {write.owner!r} does not exist")
    if isinstance(exc, _Taken | asyncpg.UniqueViolationError):
        return Conflict(f"a point of bucket {write.bucket!r} was written meanwhile at its ts")
    return InvalidInput(invalid(exc))


async def _write(
    conn: Conn, writes: Sequence[PointWrite], locked_first: bool
) -> list[RoostError | None]:
    """The group's writes in the transaction under way; ``locked_first``: the taken ts read
    after the locks are held (no other node can have taken one the insert then finds)."""
    present, taken = await _find(conn, writes, locked_first)
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


async def _find(
    conn: Conn, writes: Sequence[PointWrite], locked_first: bool
) -> tuple[set[_Key], dict[_Key, set[int]]]:
    """The buckets written that exist (each locked), and the taken ts of each in the span its
    writes' free ts may be sought in."""
    starts: dict[_Key, list[int]] = {}  # per bucket, the ts its free ts are sought from
    for write in writes:
        here = starts.setdefault((write.owner, write.bucket), [])
        if not write.replace:
            here += [ts for _, _, ts, _ in write.rows]
    bounds = [  # sorted: one lock order for every group
        (o, b, min(ts), min(max(ts) + FREE_TS_STEPS, TS_MAX)) if ts else (o, b, None, None)
        for (o, b), ts in sorted(starts.items())
    ]
    if locked_first:
        await conn.fetch(_FIND, *_columns(bounds))
    found = await conn.fetch(_FIND, *_columns(bounds))
    present = {(o, b) for (o, b, _, _), (_, exists, _) in zip(bounds, found, strict=True) if exists}
    taken = {(o, b): set(ts) for (o, b, _, _), (_, _, ts) in zip(bounds, found, strict=True)}
    return present, taken


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
