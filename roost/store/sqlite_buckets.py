"""The statements of the SQLite store for data buckets and their points, run on its worker thread.

The same conventions as ``sqlite_queries``: each function takes the connection first; constraint
failures become Conflict or NotFound. Points live in ``bucket_points``, keyed (owner, bucket, ts)
WITHOUT ROWID, so a time-range read walks the primary key in order. Writes come in groups
(:func:`write_points`): the store's writer runs every write queued meanwhile in one transaction,
each write all or none.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from roost.errors import Conflict, InvalidInput, NotFound, RoostError
from roost.store.base import EVERY, Bucket, BucketPoint, Page
from roost.store.point_writes import FREE_TS_STEPS, PointWrite
from roost.store.sqlite_queries import _paged

_COLUMNS = (
    *("owner", "bucket", "name", "description", "enabled", "config", "retention"),
    *("created", "modified"),
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM buckets"


_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # made once: stateless


def _text(value: Any) -> str:
    return _JSON.encode(value)


def _params(bucket: Bucket) -> dict[str, Any]:
    return {column: getattr(bucket, column) for column in _COLUMNS} | {
        "enabled": int(bucket.enabled),
        "config": _text(bucket.config),
        "retention": None if bucket.retention is None else _text(bucket.retention),
    }


def _from(row: tuple[Any, ...]) -> Bucket:
    owner, bucket, name, description, enabled, config, retention, created, modified = row
    return Bucket(
        owner=owner,
        bucket=bucket,
        name=name,
        description=description,
        enabled=bool(enabled),
        config=json.loads(config),
        retention=None if retention is None else json.loads(retention),
        created=created,
        modified=modified,
    )


def insert_bucket(conn: sqlite3.Connection, bucket: Bucket) -> None:
    names = ", ".join(_COLUMNS)
    values = ", ".join(f":{c}" for c in _COLUMNS)
    try:
        conn.execute(f"INSERT INTO buckets ({names}) VALUES ({values})", _params(bucket))
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise NotFound(f"user {bucket.owner!r} does not exist") from None
        raise Conflict(f"bucket {bucket.bucket!r} of {bucket.owner!r} exists") from None


def select_bucket(conn: sqlite3.Connection, owner: str, bucket: str) -> Bucket | None:
    row = conn.execute(_SELECT + " WHERE owner = ? AND bucket = ?", (owner, bucket)).fetchone()
    return None if row is None else _from(row)


def select_buckets(conn: sqlite3.Connection, owner: str, page: Page = EVERY) -> list[Bucket]:
    sql, params = _paged(_SELECT + " WHERE owner = ?", [owner], page, "bucket", ("bucket", "name"))
    return [_from(row) for row in conn.execute(sql, params)]


def select_device_source_buckets(conn: sqlite3.Connection) -> list[Bucket]:
    where = " WHERE enabled = 1 AND json_extract(config, '$.source') = 'device'"
    return [_from(row) for row in conn.execute(_SELECT + where + " ORDER BY owner, bucket")]


def update_bucket(conn: sqlite3.Connection, bucket: Bucket) -> None:
    editable = ("name", "description", "enabled", "config", "retention", "modified")
    sets = ", ".join(f"{c} = :{c}" for c in editable)
    sql = f"UPDATE buckets SET {sets} WHERE owner = :owner AND bucket = :bucket"
    if conn.execute(sql, _params(bucket)).rowcount == 0:
        raise NotFound(f"bucket {bucket.bucket!r} of {bucket.owner!r} does not exist")


def delete_bucket(conn: sqlite3.Connection, owner: str, bucket: str) -> bool:
    # its points go with it (ON DELETE CASCADE), in the same statement's transaction
    sql = "DELETE FROM buckets WHERE owner = ? AND bucket = ?"
    return conn.execute(sql, (owner, bucket)).rowcount > 0


def write_points(conn: sqlite3.Connection, writes: Sequence[PointWrite]) -> list[RoostError | None]:
    """Every write in ONE transaction (one commit for all: group commit), each all or none: a
    write that fails (its bucket gone, no free ts) is left out, its error in its place in the
    list returned, and the others are committed. Errors of the database itself (disk full, busy)
    raise, and nothing is committed."""
    if len(writes) > 1:
        # the usual case, all good: no savepoint per write; if one fails, again with them
        conn.execute("BEGIN IMMEDIATE")
        runs: _Runs = {}
        try:
            for write in writes:
                _apply(conn, write, runs)
        except _REFUSALS:
            conn.execute("ROLLBACK")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            _commit(conn)
            return [None] * len(writes)
    conn.execute("BEGIN IMMEDIATE")
    runs = {}
    try:
        outcomes = [_apply_alone(conn, write, runs) for write in writes]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    _commit(conn)
    return outcomes


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:  # nothing of the group is committed; the connection is ready again
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _apply_alone(conn: sqlite3.Connection, write: PointWrite, runs: _Runs) -> RoostError | None:
    """One write within a savepoint: its error (its rows rolled back), or None."""
    conn.execute("SAVEPOINT point_write")
    try:
        _apply(conn, write, runs)
    except _REFUSALS as exc:
        conn.execute("ROLLBACK TO point_write")
        conn.execute("RELEASE point_write")
        runs.clear()  # they may count rows rolled back
        if isinstance(exc, RoostError):
            return exc
        if isinstance(exc, sqlite3.IntegrityError):
            return NotFound(f"bucket {write.bucket!r} of {write.owner!r} does not exist")
        if isinstance(exc, OverflowError):  # SQLite integers have 64 bits
            return InvalidInput("a number is too large to be stored")
        return InvalidInput("a text is not valid Unicode")  # a lone surrogate
    conn.execute("RELEASE point_write")
    return None


def _apply(conn: sqlite3.Connection, write: PointWrite, runs: _Runs) -> None:
    """A point at an existing ts replaces it, or with ``replace`` False takes the first free
    ts after it. IntegrityError: the bucket does not exist."""
    if write.replace:
        conn.executemany(_REPLACE, write.rows)  # takes ts, frees none: the runs still hold
    else:
        for row in write.rows:
            _insert_at_free_ts(conn, runs, *row)


# what fails one write and not the others (IntegrityError: its bucket does not exist)
_REFUSALS = (RoostError, sqlite3.IntegrityError, OverflowError, UnicodeEncodeError)
_INSERT = "INSERT INTO bucket_points (owner, bucket, ts, value) VALUES (?, ?, ?, ?)"
_REPLACE = _INSERT.replace("INSERT", "INSERT OR REPLACE", 1)
_FREE = _INSERT + " ON CONFLICT DO NOTHING"
_TAKEN = (
    "SELECT ts FROM bucket_points WHERE owner = ? AND bucket = ? AND ts BETWEEN ? AND ? ORDER BY ts"
)


# (owner, bucket) -> (first, last): every ts from first to last is taken, as this transaction
# found or made it. Writes faster than one a ms into one bucket come in bursts at one ts: the
# next of a burst goes straight past the run the others took.
_Runs = dict[tuple[str, str], tuple[int, int]]


def _insert_at_free_ts(
    conn: sqlite3.Connection, runs: _Runs, owner: str, bucket: str, ts: int, value: str
) -> None:
    key = (owner, bucket)
    run = runs.get(key)
    if run is not None and run[0] <= ts <= run[1]:
        after = run[1] + 1
        if (
            after < ts + FREE_TS_STEPS
            and conn.execute(_FREE, (owner, bucket, after, value)).rowcount
        ):
            runs[key] = (run[0], after)
            return
    elif conn.execute(_FREE, (owner, bucket, ts, value)).rowcount:
        runs[key] = (ts, ts)  # the usual case: ts was free
        return
    # taken: the first gap from ts, found in one walk of the key
    free = ts
    for (taken,) in conn.execute(_TAKEN, (owner, bucket, ts, ts + FREE_TS_STEPS - 1)):
        if taken != free:
            break
        free += 1
    if free >= ts + FREE_TS_STEPS:
        raise Conflict(f"bucket {bucket!r} holds points at {FREE_TS_STEPS} ms in a row from {ts}")
    conn.execute(_INSERT, (owner, bucket, free, value))
    runs[key] = (ts, free)


def _range(min_ts: int | None, max_ts: int | None) -> tuple[str, list[Any]]:
    sql, params = "", list[Any]()
    if min_ts is not None:
        sql, params = sql + " AND ts >= ?", [*params, min_ts]
    if max_ts is not None:
        sql, params = sql + " AND ts <= ?", [*params, max_ts]
    return sql, params


def select_points(
    conn: sqlite3.Connection,
    owner: str,
    bucket: str,
    min_ts: int | None,
    max_ts: int | None,
    limit: int,
    descending: bool,
) -> list[BucketPoint]:
    where, params = _range(min_ts, max_ts)
    order = "DESC" if descending else "ASC"
    sql = (
        "SELECT ts, value FROM bucket_points WHERE owner = ? AND bucket = ?"
        f"{where} ORDER BY ts {order} LIMIT ?"
    )
    rows = conn.execute(sql, (owner, bucket, *params, limit))
    return [BucketPoint(ts, json.loads(value)) for ts, value in rows]


def delete_points(
    conn: sqlite3.Connection, owner: str, bucket: str, min_ts: int | None, max_ts: int | None
) -> int:
    where, params = _range(min_ts, max_ts)
    sql = f"DELETE FROM bucket_points WHERE owner = ? AND bucket = ?{where}"
    return conn.execute(sql, (owner, bucket, *params)).rowcount


def select_retained_buckets(conn: sqlite3.Connection) -> list[Bucket]:
    sql = _SELECT + " WHERE retention IS NOT NULL ORDER BY owner, bucket"
    return [_from(row) for row in conn.execute(sql)]


def expire_points(
    conn: sqlite3.Connection, owner: str, bucket: str, before: int, limit: int
) -> int:
    """At most ``limit`` of the oldest points before ``before``, found and deleted through the
    primary key in one short statement."""
    sql = (
        "DELETE FROM bucket_points WHERE owner = ? AND bucket = ? AND ts IN"
        " (SELECT ts FROM bucket_points WHERE owner = ? AND bucket = ? AND ts < ?"
        " ORDER BY ts LIMIT ?)"
    )
    return conn.execute(sql, (owner, bucket, owner, bucket, before, limit)).rowcount
