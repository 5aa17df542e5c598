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
runs again in one transaction that first takes a transaction-scoped advisory lock on every bucket
of the group, in one statement and one order (so that two nodes' retries never wait on each other
in a cycle, and no other node's retry picks the same ts meanwhile), then each write in a savepoint
of its own, its ts read after the locks, so that only the writes refused fail. A first try takes no
lock: should one commit a ts a retry chose, that write reads its taken ts and chooses again, a few
times at most. Rows go in in (owner, bucket, ts) order, and should PostgreSQL still break a
deadlock or a serialization conflict by failing one transaction (SQLSTATE class 40), the group runs
again (``ROLLBACK_ATTEMPTS`` at most): nothing of a rolled-back transaction was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from roost.errors import Conflict, InvalidInput, NotFound, RoostError
from roost.store.point_writes import FREE_TS_STEPS, TS_MAX, PointWrite
from roost.store.postgres_queries import Conn
from roost.store.postgres_sql import invalid

# per bucket written: whether it exists, and its taken ts in [lo, hi] (NULL: none asked for)
_FIND = (
    "SELECT EXISTS (SELECT 1 FROM buckets WHERE owner = u.o AND bucket = u.b),"
    " ARRAY (SELECT ts FROM bucket_points WHERE owner = u.o AND bucket = u.b"
    " AND ts BETWEEN u.lo AND u.hi)"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u (o, b, lo, hi)"
)
# a retry's lock on every bucket of its group, held to the commit: taken in the order of the lock
# keys themselves (two buckets' keys may collide), so every retry takes them in one order
_LOCK = (
    "SELECT count(pg_advisory_xact_lock(k.h)) FROM (SELECT DISTINCT"
    " hashtextextended(u.o || '/' || u.b, 0) AS h FROM unnest($1::text[], $2::text[]) AS u (o, b)"
    " ORDER BY h) AS k"
)
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
# a transaction PostgreSQL rolled back to break a deadlock (or a serialization conflict): run again
_ROLLED_BACK = asyncpg.TransactionRollbackError
ROLLBACK_ATTEMPTS = 5  # runs of a group's retry before such a rollback fails the group
CHOICE_ATTEMPTS = 5  # choices of a write's ts under the locks, each found taken by a first try


async def write_points(conn: Conn, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    """Every write in ONE transaction (one commit for all), each all or none: for each write in
    order, None or why it was refused (then none of its rows is written). Errors of the database
    itself (gone, a timeout) raise, and nothing is committed."""
    try:  # first as two statements, each its own transaction (the second writes all or none)
        return await _write(conn, writes)
    except _REFUSALS as exc:
        if len(writes) == 1 and not isinstance(exc, _Taken):
            return [_refusal(writes[0], exc)]
    except _ROLLED_BACK:
        pass
    for attempt in range(1, ROLLBACK_ATTEMPTS + 1):
        try:
            return await _write_locked(conn, writes)
        except _ROLLED_BACK:
            if attempt == ROLLBACK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _write_locked(conn: Conn, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    """The group in one transaction under the locks of its buckets, each write in a savepoint."""
    outcomes: list[RoostError | None] = []
    async with conn.transaction():
        await conn.fetchval(_LOCK, *_columns(sorted({(w.owner, w.bucket) for w in writes}))[:2])
        for write in writes:
            outcomes.append(await _write_one(conn, write))
    return outcomes


async def _write_one(conn: Conn, write: PointWrite) -> RoostError | None:
    """One write under its bucket's lock, in a savepoint: a ts it chose taken meanwhile (by a
    first try, which takes no lock) is read, and its ts chosen again."""
    for attempt in range(1, CHOICE_ATTEMPTS + 1):
        try:
            async with conn.transaction():  # a savepoint: this write alone rolls back
                [outcome] = await _write(conn, [write])
            return outcome
        except _Taken as exc:
            if attempt == CHOICE_ATTEMPTS:
                return _refusal(write, exc)
        except _REFUSALS as exc:
            return _refusal(write, exc)
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(write: PointWrite, exc: BaseException) -> RoostError:
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return NotFound(f"bucket {write.bucket!r} of {write.owner!r} does not exist")
    if isinstance(exc, _Taken | asyncpg.UniqueViolationError):
        return Conflict(f"a point of bucket {write.bucket!r} was written meanwhile at its ts")
    return InvalidInput(invalid(exc))


async def _write(conn: Conn, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    """The writes, their taken ts read in a statement of their own (after the locks, if held)."""
    present, taken = await _find(conn, writes)
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


async def _find(conn: Conn, writes: Sequence[PointWrite]) -> tuple[set[_Key], dict[_Key, set[int]]]:
    """The buckets written that exist, and the taken ts of each in the span its writes' free ts
    may be sought in."""
    starts: dict[_Key, list[int]] = {}  # per bucket, the ts its free ts are sought from
    for write in writes:
        here = starts.setdefault((write.owner, write.bucket), [])
        if not write.replace:
            here += [ts for _, _, ts, _ in write.rows]
    bounds = [
        (o, b, min(ts), min(max(ts) + FREE_TS_STEPS, TS_MAX)) if ts else (o, b, None, None)
        for (o, b), ts in starts.items()
    ]
    found = await conn.fetch(_FIND, *_columns(bounds))
    present = {(o, b) for (o, b, _, _), (exists, _) in zip(bounds, found, strict=True) if exists}
    taken = {(o, b): set(ts) for (o, b, _, _), (_, ts) in zip(bounds, found, strict=True)}
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
    # in one order for every writer: two never wait on each other's rows in a cycle
    ordered = sorted(rows.items())
    free = [(*key, value) for key, (value, replace) in ordered if not replace]
    replacing = [(*key, value) for key, (value, replace) in ordered if replace]
    try:
        await conn.fetchval(_WRITE, *_columns(free), *_columns(replacing), len(free))
    except asyncpg.DivisionByZeroError:
        raise _Taken from None


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Four arrays (owner, bucket, ts, and value or a bound) of the rows, for ``unnest``."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[], [], [], []]
