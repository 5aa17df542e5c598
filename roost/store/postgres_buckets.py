"""The statements of the PostgreSQL store for data buckets and their points.

Points are rows of ``bucket_points`` keyed (owner, bucket, ts): a time-range read, the newest N,
an aggregation window and a retention delete each walk one contiguous range of that index. A
write of many points is one statement over arrays (``unnest``), in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import EVERY, Bucket, BucketPoint, Page
from roost.store.postgres_queries import Conn, insert, select
from roost.store.postgres_sql import constraints, count, paged, text

_COLUMNS = (
    *("owner", "bucket", "name", "description", "enabled", "config", "retention"),
    *("created", "modified"),
)
_SELECT = select("buckets", _COLUMNS)
BULK_TIMEOUT = 300.0  # seconds a statement deleting a whole bucket's points may take
FREE_TS_STEPS = 1000  # taken ts skipped before a point that must not replace one is refused


def _values(bucket: Bucket) -> list[Any]:
    json_fields = {
        "config": text(bucket.config),
        "retention": None if bucket.retention is None else text(bucket.retention),
    }
    return [json_fields[c] if c in json_fields else getattr(bucket, c) for c in _COLUMNS]


def _from(row: Any) -> Bucket:
    owner, bucket, name, description, enabled, config, retention, created, modified = row
    return Bucket(
        owner=owner,
        bucket=bucket,
        name=name,
        description=description,
        enabled=enabled,
        config=json.loads(config),
        retention=None if retention is None else json.loads(retention),
        created=created,
        modified=modified,
    )


async def insert_bucket(conn: Conn, bucket: Bucket) -> None:
    values = _values(bucket)
    thing = f"bucket {bucket.bucket!r} of {bucket.owner!r}"
    with constraints(thing, parent=f"user {bucket.owner!r}"):
        await conn.execute(insert("buckets", _COLUMNS), *values)


async def select_bucket(conn: Conn, owner: str, bucket: str) -> Bucket | None:
    row = await conn.fetchrow(_SELECT + " WHERE owner = $1 AND bucket = $2", owner, bucket)
    return None if row is None else _from(row)


async def select_buckets(conn: Conn, owner: str, page: Page = EVERY) -> list[Bucket]:
    sql, params = paged(_SELECT + " WHERE owner = $1", [owner], page, "bucket", ("bucket", "name"))
    return [_from(row) for row in await conn.fetch(sql, *params)]


async def select_device_source_buckets(conn: Conn) -> list[Bucket]:
    where = " WHERE enabled AND json_typeof(config) = 'object' AND config->>'source' = 'device'"
    return [_from(row) for row in await conn.fetch(_SELECT + where + " ORDER BY owner, bucket")]


async def update_bucket(conn: Conn, bucket: Bucket) -> None:
    values = dict(zip(_COLUMNS, _values(bucket), strict=True))
    editable = ("name", "description", "enabled", "config", "retention", "modified")
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(editable, start=3))
    status = await conn.execute(
        f"UPDATE buckets SET {sets} WHERE owner = $1 AND bucket = $2",
        bucket.owner,
        bucket.bucket,
        *(values[c] for c in editable),
    )
    if count(status) == 0:
        raise NotFound(f"bucket {bucket.bucket!r} of {bucket.owner!r} does not exist")


async def delete_bucket(conn: Conn, owner: str, bucket: str) -> bool:
    sql = "DELETE FROM buckets WHERE owner = $1 AND bucket = $2"  # its points with it (CASCADE)
    return count(await conn.execute(sql, owner, bucket, timeout=BULK_TIMEOUT)) > 0


_UPSERT = (
    "INSERT INTO bucket_points (owner, bucket, ts, value)"
    " SELECT $1, $2, t, v FROM unnest($3::bigint[], $4::json[]) AS p (t, v)"
    " ON CONFLICT (owner, bucket, ts) DO UPDATE SET value = EXCLUDED.value"
)
# the first free ts of [ts, ts + FREE_TS_STEPS) taken in one statement; no row when none is free
# or another writer took it meanwhile (ON CONFLICT)
_INSERT_FREE = (
    "INSERT INTO bucket_points (owner, bucket, ts, value)"
    " SELECT $1, $2, t, $4 FROM generate_series($3::bigint, $3::bigint + $5 - 1) AS t"
    " WHERE NOT EXISTS (SELECT 1 FROM bucket_points"
    " WHERE owner = $1 AND bucket = $2 AND ts = t) ORDER BY t LIMIT 1"
    " ON CONFLICT (owner, bucket, ts) DO NOTHING RETURNING ts"
)
_TAKEN = (
    "SELECT COUNT(*) FROM bucket_points WHERE owner = $1 AND bucket = $2"
    " AND ts >= $3 AND ts < $3 + $4"
)


async def write_points(
    conn: Conn, owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
) -> None:
    """Every point or none; a point at an existing ts replaces it (of two at one ts in the same
    write, the later), or with ``replace`` False takes the first free ts after it. One statement
    when it can be (a replacing write, one point), else one transaction."""
    rows = [(ts, text(value)) for ts, value in points]
    if not rows:
        return
    with constraints(f"points of bucket {bucket!r}", parent=f"bucket {bucket!r} of {owner!r}"):
        if replace:
            latest = dict(rows)
            await conn.execute(_UPSERT, owner, bucket, list(latest), list(latest.values()))
        elif len(rows) == 1:
            await _insert_at_free_ts(conn, owner, bucket, *rows[0])
        else:
            async with conn.transaction():
                for ts, value in rows:
                    await _insert_at_free_ts(conn, owner, bucket, ts, value)


async def _insert_at_free_ts(conn: Conn, owner: str, bucket: str, ts: int, value: str) -> None:
    while await conn.fetchval(_INSERT_FREE, owner, bucket, ts, value, FREE_TS_STEPS) is None:
        if await conn.fetchval(_TAKEN, owner, bucket, ts, FREE_TS_STEPS) >= FREE_TS_STEPS:
            raise Conflict(
                f"bucket {bucket!r} holds points at {FREE_TS_STEPS} ms in a row from {ts}"
            )
        # another node took the free ts meanwhile: look again


def _range(min_ts: int | None, max_ts: int | None, params: list[Any]) -> str:
    sql = ""
    if min_ts is not None:
        params.append(min_ts)
        sql += f" AND ts >= ${len(params)}"
    if max_ts is not None:
        params.append(max_ts)
        sql += f" AND ts <= ${len(params)}"
    return sql


async def select_points(
    conn: Conn,
    owner: str,
    bucket: str,
    min_ts: int | None,
    max_ts: int | None,
    limit: int,
    descending: bool,
) -> list[BucketPoint]:
    params: list[Any] = [owner, bucket]
    where = _range(min_ts, max_ts, params)
    params.append(limit)
    order = "DESC" if descending else "ASC"
    sql = (
        "SELECT ts, value FROM bucket_points WHERE owner = $1 AND bucket = $2"
        f"{where} ORDER BY ts {order} LIMIT ${len(params)}"
    )
    return [BucketPoint(ts, json.loads(value)) for ts, value in await conn.fetch(sql, *params)]


async def delete_points(
    conn: Conn, owner: str, bucket: str, min_ts: int | None, max_ts: int | None
) -> int:
    params: list[Any] = [owner, bucket]
    where = _range(min_ts, max_ts, params)
    sql = f"DELETE FROM bucket_points WHERE owner = $1 AND bucket = $2{where}"
    return count(await conn.execute(sql, *params, timeout=BULK_TIMEOUT))


async def select_retained_buckets(conn: Conn) -> list[Bucket]:
    sql = _SELECT + " WHERE retention IS NOT NULL ORDER BY owner, bucket"
    return [_from(row) for row in await conn.fetch(sql)]


async def expire_points(conn: Conn, owner: str, bucket: str, before: int, limit: int) -> int:
    """At most ``limit`` of the oldest points before ``before``: those before the bucket's
    (limit + 1)-th oldest point, one range of the index (5 times faster than ``ts IN (the oldest
    limit)``: docs/design.md, "PostgreSQL store")."""
    sql = (
        "DELETE FROM bucket_points WHERE owner = $1 AND bucket = $2 AND ts < LEAST($3, COALESCE("
        "(SELECT ts FROM bucket_points WHERE owner = $1 AND bucket = $2 ORDER BY ts"
        " OFFSET $4 LIMIT 1), $3))"
    )
    return count(await conn.execute(sql, owner, bucket, before, limit))
