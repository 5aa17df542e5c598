"""The statements of the SQLite store for data buckets and their points, run on its worker thread.

The same conventions as ``sqlite_queries``: each function takes the connection first; constraint
failures become Conflict or NotFound. Points live in ``bucket_points``, keyed (owner, bucket, ts)
WITHOUT ROWID, so a time-range read walks the primary key in order; a write of many points is one
transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import EVERY, Bucket, BucketPoint, Page
from roost.store.sqlite_queries import _paged

_COLUMNS = (
    *("owner", "bucket", "name", "description", "enabled", "config", "retention"),
    *("created", "modified"),
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM buckets"


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


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


def write_points(
    conn: sqlite3.Connection,
    owner: str,
    bucket: str,
    points: Sequence[tuple[int, Any]],
    replace: bool = True,
) -> None:
    """Every point or none, in one transaction; a point at an existing ts replaces it, or with
    ``replace`` False takes the first free ts after it."""
    rows = [(owner, bucket, ts, _text(value)) for ts, value in points]
    conn.execute("BEGIN IMMEDIATE")
    ok = False
    try:
        if replace:
            conn.executemany(_INSERT.replace("INSERT", "INSERT OR REPLACE", 1), rows)
        else:
            for row in rows:
                _insert_at_free_ts(conn, *row)
        ok = True
    except sqlite3.IntegrityError:
        raise NotFound(f"bucket {bucket!r} of {owner!r} does not exist") from None
    finally:
        conn.execute("COMMIT" if ok else "ROLLBACK")


_INSERT = "INSERT INTO bucket_points (owner, bucket, ts, value) VALUES (?, ?, ?, ?)"
FREE_TS_STEPS = 1000  # taken ts skipped before a point that must not replace one is refused


def _insert_at_free_ts(
    conn: sqlite3.Connection, owner: str, bucket: str, ts: int, value: str
) -> None:
    for step in range(FREE_TS_STEPS):
        if conn.execute(
            _INSERT + " ON CONFLICT DO NOTHING", (owner, bucket, ts + step, value)
        ).rowcount:
            return
    raise Conflict(f"bucket {bucket!r} holds points at {FREE_TS_STEPS} ms in a row from {ts}")


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
