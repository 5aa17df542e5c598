"""Point writes of the PostgreSQL store, in groups: every write queued while the previous group
was in flight is committed by ONE statement (:class:`roost.store.group_commit.AsyncGroupCommit`),
each write all or none.

A group is two statements whatever its size, each its own transaction (a round trip each: the
replies wait for a busy event loop, and BEGIN and COMMIT of their own cost a third of the rate).
The first learns which buckets written exist and reads the taken ts the writes that must not
replace a point could land on; the ts are picked here; the second is one INSERT of every row
(over arrays: ``unnest``), which writes nothing if one of the ts found free was taken meanwhile
(another node's write). A write into a bucket that does not exist, or with no free ts within
``FREE_TS_STEPS`` ms, fails alone, found before any row is written. Should the database refuse
the INSERT (a ts taken meanwhile, a value it cannot hold, a bucket deleted meanwhile), the group
runs again in one transaction, each write in a savepoint of its own and its ts read after a
transaction-scoped advisory lock per bucket (which every such retry takes: no other node's retry
picks the same ts meanwhile), so that only the writes refused fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from roost.errors import Conflict, InvalidInput, NotFound, RoostError
from roost.store.point_writes import FREE_TS_STEPS, TS_MAX, PointWrite
from roost.store.postgres_queries import Conn
from roost.store.postgres_sql import invalid

# per bucket written: a lock held to the commit, whether it exists, and its taken ts in [lo, hi]
# (NULL: none asked for), read in the statement's snapshot: taken before the lock (READ
# COMMITTED), so a retry runs it twice, the second time under the lock; _PEEK: without the lock
_FIND = (
    "SELECT pg_advisory_xact_lock(hashtextextended(u.o || '/' || u.b, 0))::text,"
    " EXISTS (SELECT 1 FROM buckets WHERE owner = u.o AND bucket = u.b),"
    " ARRAY (SELECT ts FROM bucket_points WHERE owner = u.o AND bucket = u.b"
    " AND ts BETWEEN u.lo AND u.hi)"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u (o, b, lo, hi)"
)
_PEEK = _FIND.replace("pg_advisory_xact_lock(hashtextextended(u.o || '/' || u.b, 0))", "NULL")
_INSERT = "INSERT INTO bucket_points (owner, bucket, ts, value) SELECT * FROM unnest"
# the replacing rows ($5-$8), and the rows at a ts found free ($1-$4), $9 of them: should one
# be taken meanwhile, the statement fails (division by zero) and writes nothing
_WRITE = (
    f"WITH replaced AS ({_INSERT} ($5::text[], $6::text[], $7::bigint[], $8::json[])"
    " ON CONFLICT (owner, bucket, ts) DO UPDATE SET value = EXCLUDED.value),"
    f" inserted AS ({_INSERT} ($1::text[], $2::text[], $3::bigint[], $4::json[])"
    " ON CONFLICT (owner, bucket, ts) DO NOTHING RETURNING 1)"
    " SELECT 1 / (CASE WHEN (SELECT count(*) FROM inserted) = $9 THEN 1 ELSE 0 END)"
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
    try:  # first as two statements, each its own transaction (the second writes all or none)
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
    """The group's writes; ``locked_first`` (in a transaction): the taken ts read after the
    locks are held (no other node's retry can take one meanwhile)."""
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
    found = await conn.fetch(_FIND if locked_first else _PEEK, *_columns(bounds))
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
    try:
        await conn.fetchval(_WRITE, *_columns(free), *_columns(replacing), len(free))
    except asyncpg.DivisionByZeroError:
        raise _Taken from None


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Four arrays (owner, bucket, ts, and value or a bound) of the rows, for ``unnest``."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], [], []]
