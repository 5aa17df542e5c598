"""The statements of the PostgreSQL store for data buckets and their points.

Points are rows of ``bucket_points`` keyed (owner, bucket, ts): a time-range read, the newest N,
an aggregation window and a retention delete each walk one contiguous range of that index. Point
writes are in ``postgres_points`` (in groups).
"""

from __future__ import annotations

import json
from typing import Any

from roost.errors import NotFound
from roost.store.base import EVERY, Bucket, BucketPoint, Page
from roost.store.postgres_queries import Conn, insert, select
from roost.store.postgres_sql import constraints, count, paged, text

_COLUMNS = (
    *("owner", "bucket", "name", "description", "enabled", "config", "retention"),
    *("created", "modified"),
)
_SELECT = select("buckets", _COLUMNS)
BULK_TIMEOUT = 300.0  # seconds a statement deleting a whole bucket's points may take


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
