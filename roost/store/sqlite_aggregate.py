"""Aggregated bucket reads in SQLite: the two statements the walk of
:mod:`roost.store.aggregate` asks for, each run as its own job on the store's worker thread.

``group`` reads one slice [lo, hi) of constant UTC offset through the primary key (owner, bucket,
ts), splits each point's top-level object into fields with ``json_each``, keeps the numbers, and
groups by the bucket key computed in SQL from ts + offset (a multiple of the period's length, or
the local calendar month); ``seek`` finds the next point, so that empty stretches cost nothing.
"""

from __future__ import annotations

import sqlite3

from roost.store.aggregate import Grouping, Partial

_FROM = (
    "FROM bucket_points AS p, json_each(p.value) AS j"
    " WHERE p.owner = :owner AND p.bucket = :bucket AND p.ts >= :lo AND p.ts < :hi"
    " AND j.type IN ('integer', 'real') AND typeof(j.key) = 'text'"
)
# TOTAL, not SUM: a sum of integers past 64 bits is a float, not an error
_COLUMNS = (
    "MIN(p.ts), j.key, COUNT(*), SUM(j.type = 'real'), TOTAL(j.value), TOTAL(j.value * j.value),"
    " MIN(j.value), MAX(j.value)"
)
# the local time (ms) shifted so that buckets are its multiples of :size
_FIXED = "((p.ts + :offset - :shift) % :size + :size) % :size"
_LOCAL = "(p.ts + :offset) / 1000, 'unixepoch'"
_MONTH = (
    f"(CAST(strftime('%Y', {_LOCAL}) AS INTEGER) * 12"
    f" + CAST(strftime('%m', {_LOCAL}) AS INTEGER) - 1) / :months"
)
_BY_FIXED = f"SELECT {_COLUMNS} {_FROM} GROUP BY p.ts - {_FIXED}, j.key"
_BY_MONTH = f"SELECT {_COLUMNS} {_FROM} GROUP BY {_MONTH}, j.key"
_NEXT = (
    "SELECT ts FROM bucket_points WHERE owner = ? AND bucket = ? AND ts >= ? ORDER BY ts LIMIT 1"
)
_PREVIOUS = (
    "SELECT ts FROM bucket_points WHERE owner = ? AND bucket = ? AND ts <= ?"
    " ORDER BY ts DESC LIMIT 1"
)


def group(
    conn: sqlite3.Connection, owner: str, bucket: str, lo: int, hi: int, grouping: Grouping
) -> list[Partial]:
    p = grouping.period
    params = {"owner": owner, "bucket": bucket, "lo": lo, "hi": hi, "offset": grouping.offset}
    if p.months:
        rows = conn.execute(_BY_MONTH, params | {"months": p.months})
    else:
        rows = conn.execute(_BY_FIXED, params | {"size": p.size, "shift": p.shift})
    return [Partial(*row) for row in rows]


def seek(
    conn: sqlite3.Connection, owner: str, bucket: str, ts: int, descending: bool
) -> int | None:
    if ts < 0:
        return None
    row = conn.execute(_PREVIOUS if descending else _NEXT, (owner, bucket, ts)).fetchone()
    return None if row is None else int(row[0])
