"""Aggregated bucket reads in PostgreSQL: the two statements the walk of
:mod:`roost.store.aggregate` asks for (the boundary arithmetic stays there, shared with SQLite).

``group`` reads one slice [lo, hi) of constant UTC offset through the primary key (owner, bucket,
ts), splits each point's top-level object into fields (``json_each``), keeps the numbers, and
groups in the database by the bucket key computed from ts + offset (a multiple of the period's
length, or the local calendar month); ``seek`` finds the next point, so empty stretches cost
nothing. Numbers are read as ``numeric`` (exact, any size, so a sum never overflows in the
database); sums become floats here, as SQLite's TOTAL gives them (past 1e308: infinite).
"""

from __future__ import annotations

from decimal import Decimal

from roost.store.aggregate import Grouping, Partial
from roost.store.postgres_queries import Conn

_FROM = (
    "FROM bucket_points AS p CROSS JOIN LATERAL json_each(CASE WHEN json_typeof(p.value)"
    " = 'object' THEN p.value ELSE '{}'::json END) AS j"
    " WHERE p.owner = $1 AND p.bucket = $2 AND p.ts >= $3 AND p.ts < $4"
    " AND json_typeof(j.value) = 'number'"
)
_NUMBER = "(j.value::text)::numeric"
_COLUMNS = (
    f"MIN(p.ts), j.key, COUNT(*), COUNT(*) FILTER (WHERE j.value::text ~ '[.eE]'),"
    f" SUM({_NUMBER}), SUM({_NUMBER} * {_NUMBER}), MIN({_NUMBER}), MAX({_NUMBER}),"
    f" bool_or(j.value::text ~ '[.eE]')"
)
# the local time (ms) shifted so that buckets are its multiples of $6 ($5: offset, $7: shift)
_FIXED = "p.ts - (((p.ts + $5 - $7) % $6) + $6) % $6"
_LOCAL = "(to_timestamp(floor((p.ts + $5) / 1000.0)) AT TIME ZONE 'UTC')"
_MONTH = f"((extract(year FROM {_LOCAL})::int * 12 + extract(month FROM {_LOCAL})::int - 1) / $6)"
_BY_FIXED = f"SELECT {_COLUMNS} {_FROM} GROUP BY {_FIXED}, j.key"
_BY_MONTH = f"SELECT {_COLUMNS} {_FROM} GROUP BY {_MONTH}, j.key"
_NEXT = (
    "SELECT ts FROM bucket_points WHERE owner = $1 AND bucket = $2 AND ts >= $3 ORDER BY ts LIMIT 1"
)
_PREVIOUS = (
    "SELECT ts FROM bucket_points WHERE owner = $1 AND bucket = $2 AND ts <= $3"
    " ORDER BY ts DESC LIMIT 1"
)


def _number(value: Decimal, real: bool) -> float | int:
    return float(value) if real or value != value.to_integral_value() else int(value)


async def group(
    conn: Conn, owner: str, bucket: str, lo: int, hi: int, grouping: Grouping
) -> list[Partial]:
    p = grouping.period
    if p.months:
        rows = await conn.fetch(_BY_MONTH, owner, bucket, lo, hi, grouping.offset, p.months)
    else:
        params = (owner, bucket, lo, hi, grouping.offset, p.size, p.shift)
        rows = await conn.fetch(_BY_FIXED, *params)
    return [
        Partial(
            *(first, name, n, reals, float(total), float(squares)),
            *(_number(low, real), _number(high, real)),
        )
        for first, name, n, reals, total, squares, low, high, real in rows
    ]


async def seek(conn: Conn, owner: str, bucket: str, ts: int, descending: bool) -> int | None:
    if ts < 0:
        return None
    found = await conn.fetchval(_PREVIOUS if descending else _NEXT, owner, bucket, ts)
    return None if found is None else int(found)
