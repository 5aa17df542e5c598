"""Data buckets: /v1/users/{user}/buckets[/{bucket}] and their data (thinger-api.md 2.10).

A bucket has an id (``bucket``, :data:`roost.ids.BUCKET`), a ``name``, a ``description``,
``enabled``, a ``config`` saying where its points come from (``source``: ``write`` for devices'
bucket writes, ``api`` for ``POST .../data``, ``device`` for a resource the server samples, with
``device``, ``resource`` and ``update`` = ``interval`` (and ``interval`` in seconds), ``events`` or
``none``) and a ``retention`` (``{"period": n, "unit": "hours"|"days"|"weeks"|"months"|"years"}``,
or null: keep every point).

Points are JSON values at a ``ts`` in ms; a point written at a ts the bucket holds replaces it.
``POST .../data`` takes one object or an array of them, each with an optional ``ts`` (taken out of
the stored value; absent: the time of the request, and when no point of the request has one, each
takes the first free ms from then, so that none replaces another) and answers 200 once every point
is committed.
``GET /v1/.../data`` answers ``[{ts, val}]``, ``/v2/...`` ``[{ts, ...fields}]``; ``items`` (1 to
1000, default 1000), ``min_ts`` and ``max_ts`` (inclusive, ms; 0 or absent: no bound) and ``sort``
(``desc`` by default: the latest first) page through them as the Node-RED and n8n clients do.
With ``agg`` (``5min`` ... ``1y``), ``agg_type`` (``count``, ``max``, ``mean`` (the default),
``min``, ``spread``, ``stddev``, ``sum``) and ``tz`` (an IANA zone, UTC by default) a read answers
one row per bucket of time instead, ``{ts, field: value, ...}`` (v1: ``{ts, <agg_type>: {...}}``)
over the numeric fields, paged the same way (roost/store/aggregate.py: the boundaries and rows).
``DELETE .../data`` clears the bucket, whole or between ``min_ts`` and ``max_ts`` (Thinger has
no such route in its specs; its console clears with the ``ClearBucket`` action, as here).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.json import json_response, read_json, read_json_object
from roost.api.paging import page_of
from roost.api.validate import TEXT_LIMIT, described, described_changes, optional_str, timestamp
from roost.errors import Conflict, InvalidInput, NotFound
from roost.services import Services
from roost.store import aggregate
from roost.store.aggregate import MAX_TS, AggregateQuery, AggregateRow
from roost.store.base import Bucket, BucketPoint

MAX_ITEMS = 1000  # a read answers at most this many points; clients page beyond
MAX_POINTS = 10_000  # in one POST .../data
SOURCES = ("write", "api", "device")
UPDATES = ("interval", "events", "none")
UNITS = ("hours", "days", "weeks", "months", "years")
MAX_INTERVAL = 365 * 24 * 3600  # s
MAX_PERIOD = 100_000
UNSUPPORTED = ("transform", "group_by")


def bucket_json(bucket: Bucket) -> dict[str, Any]:
    return {
        "bucket": bucket.bucket,
        "name": bucket.name,
        "description": bucket.description,
        "enabled": bucket.enabled,
        "config": bucket.config,
        "retention": bucket.retention,
        "created": bucket.created,
        "modified": bucket.modified,
    }


async def list_buckets(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "ListBuckets", owner)
    services: Services = request.app.state.services
    listed = await services.store.list_buckets(owner, page_of(request))
    return json_response([bucket_json(b) for b in listed])


async def create_bucket(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "CreateBucket", owner)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    bucket_id = ids.validate(ids.BUCKET, body.get("bucket"))
    now = services.now_ms()
    bucket = Bucket(
        owner=owner,
        bucket=bucket_id,
        **described(body, bucket_id),
        config=parse_config(body.get("config", {"source": "write"})),
        retention=parse_retention(body.get("retention")),
        created=now,
        modified=now,
    )
    try:
        await services.store.create_bucket(bucket)
    except Conflict:
        raise Conflict(f"bucket {bucket_id!r} already exists") from None
    await services.feeds.reload(owner, bucket_id)  # a device-source bucket is fed at once
    return json_response(bucket_json(bucket))


async def read_bucket(request: Request) -> Response:
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "ReadBucketConfig", owner, bucket_id)
    services: Services = request.app.state.services
    return json_response(bucket_json(await _find(services, owner, bucket_id)))


async def update_bucket(request: Request) -> Response:
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "UpdateBucket", owner, bucket_id)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    if body.get("bucket") not in (None, bucket_id):
        raise InvalidInput("the bucket id cannot be changed")
    bucket = await _find(services, owner, bucket_id)
    changes = described_changes(body, services.now_ms())
    if body.get("config") is not None:
        changes["config"] = parse_config(body["config"])
    if "retention" in body:
        changes["retention"] = parse_retention(body["retention"])
    updated = dataclasses.replace(bucket, **changes)
    await services.store.update_bucket(updated)
    await services.feeds.reload(owner, bucket_id)  # fed, retuned or stopped as it now says
    return json_response(bucket_json(updated))


async def delete_bucket(request: Request) -> Response:
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "DeleteBucket", owner, bucket_id)
    services: Services = request.app.state.services
    if not await services.store.delete_bucket(owner, bucket_id):
        raise NotFound(f"bucket {bucket_id!r} not found")
    await services.feeds.reload(owner, bucket_id)  # no longer fed
    await services.exports.forget_bucket(owner, bucket_id)  # its export files go with it
    return Response(status_code=200)


async def write_data(request: Request) -> Response:
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "WriteBucket", owner, bucket_id)
    services: Services = request.app.state.services
    body = await read_json(request, services.settings.max_body_bytes)
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_POINTS:
        raise InvalidInput(f"write 1 to {MAX_POINTS} objects at a time")
    now = services.now_ms()
    points = [_point(item, now) for item in items]
    bucket = await _find(services, owner, bucket_id)
    if not bucket.enabled:
        raise Conflict(f"bucket {bucket_id!r} is disabled")
    if bucket.config.get("source") == "device":
        raise Conflict(f"bucket {bucket_id!r} is filled from a device, not written")
    try:
        # untimed points (no ts anywhere in the request) keep each other: one free ms each
        timed = any(isinstance(item, dict) and "ts" in item for item in items)
        await services.store.write_points(owner, bucket_id, points, replace=timed)
    except NotFound:  # deleted meanwhile
        raise NotFound(f"bucket {bucket_id!r} not found") from None
    return Response(status_code=200)


async def read_data(request: Request) -> Response:
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "ReadBucket", owner, bucket_id)
    services: Services = request.app.state.services
    query = request.query_params
    for name in UNSUPPORTED:
        if query.get(name):
            raise InvalidInput(f"{name} is not supported yet: read the points and aggregate them")
    if any(name.startswith("tag_") for name in query):  # the Node-RED node's tag filters
        raise InvalidInput("tag filters are not supported yet: read the points and filter them")
    items = _query_int(query.get("items"), "items", 1, MAX_ITEMS, default=MAX_ITEMS)
    min_ts = _query_int(query.get("min_ts"), "min_ts", 0, MAX_TS, default=0)
    max_ts = _query_int(query.get("max_ts"), "max_ts", 0, MAX_TS, default=0)
    sort = query.get("sort") or "desc"
    if sort not in ("asc", "desc"):
        raise InvalidInput("sort must be asc or desc")
    v1 = request.url.path.startswith("/v1/")
    if query.get("agg"):
        agg = AggregateQuery(
            period=aggregate.period(query["agg"]),
            function=aggregate.function(query.get("agg_type") or "mean"),
            tz=aggregate.zone(query.get("tz") or "UTC").key,
            min_ts=min_ts or None,
            max_ts=max_ts or None,
            limit=items,
            descending=sort == "desc",
        )
        await _find(services, owner, bucket_id)
        rows = await services.store.aggregate_points(owner, bucket_id, agg)
        return json_response([_aggregated(row, agg.function if v1 else None) for row in rows])
    await _find(services, owner, bucket_id)
    points = await services.store.read_points(
        owner, bucket_id, min_ts or None, max_ts or None, items, descending=sort == "desc"
    )
    shape = _v1 if v1 else _v2
    return json_response([shape(point) for point in points])


async def clear_data(request: Request) -> Response:
    """Deletes the bucket's points with min_ts <= ts <= max_ts (each 0 or absent: no bound);
    Thinger's console clears a bucket, whole or a time range, with the ClearBucket action."""
    owner, bucket_id = request.path_params["user"], request.path_params["bucket"]
    await authorize(request, "ClearBucket", owner, bucket_id)
    services: Services = request.app.state.services
    query = request.query_params
    min_ts = _query_int(query.get("min_ts"), "min_ts", 0, MAX_TS, default=0)
    max_ts = _query_int(query.get("max_ts"), "max_ts", 0, MAX_TS, default=0)
    await _find(services, owner, bucket_id)
    deleted = await services.store.delete_points(owner, bucket_id, min_ts or None, max_ts or None)
    return json_response({"deleted": deleted})


def _aggregated(row: AggregateRow, wrapper: str | None) -> dict[str, Any]:
    """v2: ``{ts, field: value, ...}``; v1: the values under the aggregation's name, as Thinger
    answers v1 (``{ts, mean: {...}}`` where a plain read has ``val``)."""
    if wrapper is None:
        return {**row.values, "ts": row.ts}
    return {"ts": row.ts, wrapper: row.values}


def _v1(point: BucketPoint) -> dict[str, Any]:
    return {"ts": point.ts, "val": point.value}


def _v2(point: BucketPoint) -> dict[str, Any]:
    if isinstance(point.value, dict):
        return {**point.value, "ts": point.ts}
    return {"ts": point.ts, "val": point.value}


def _point(item: object, now: int) -> tuple[int, Any]:
    if not isinstance(item, dict):
        raise InvalidInput("each point must be a JSON object")
    value = dict(item)
    ts = timestamp(value.pop("ts"), "ts") if "ts" in value else now
    if not value:
        raise InvalidInput("each point needs a field besides ts")
    return ts, value


def _query_int(text: str | None, name: str, low: int, high: int, default: int) -> int:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 16 and low <= int(text) <= high):
        raise InvalidInput(f"{name} must be an integer from {low} to {high}")
    return int(text)


async def _find(services: Services, owner: str, bucket_id: str) -> Bucket:
    bucket = await services.store.get_bucket(owner, bucket_id)
    if bucket is None:
        raise NotFound(f"bucket {bucket_id!r} not found")
    return bucket


def parse_config(config: object) -> dict[str, Any]:
    """The bucket's config, with only the fields its source uses."""
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    source = config.get("source")
    if source not in SOURCES:
        raise InvalidInput(f"config.source must be one of {', '.join(SOURCES)}")
    if source != "device":
        return {"source": source}
    device = ids.validate(ids.DEVICE, config.get("device"))
    resource = optional_str(config, "resource", limit=TEXT_LIMIT)
    if not resource:
        raise InvalidInput("config.resource must name the device's resource")
    update = config.get("update", "interval")
    if update not in UPDATES:
        raise InvalidInput(f"config.update must be one of {', '.join(UPDATES)}")
    out = {"source": source, "device": device, "resource": resource, "update": update}
    if update == "interval":
        interval = config.get("interval")
        if isinstance(interval, bool) or not isinstance(interval, int):
            raise InvalidInput("config.interval must be a whole number of seconds")
        if not 1 <= interval <= MAX_INTERVAL:
            raise InvalidInput(f"config.interval must be from 1 to {MAX_INTERVAL} seconds")
        out["interval"] = interval
    return out


def parse_retention(retention: object) -> dict[str, Any] | None:
    """``{"period": n, "unit": ...}``, or None (null, absent, or a period of 0): keep all."""
    if retention is None:
        return None
    if not isinstance(retention, dict):
        raise InvalidInput("retention must be a JSON object {period, unit}, or null")
    period, unit = retention.get("period"), retention.get("unit")
    if isinstance(period, bool) or not isinstance(period, int) or not 0 <= period <= MAX_PERIOD:
        raise InvalidInput(f"retention.period must be a whole number from 0 to {MAX_PERIOD}")
    if unit not in UNITS:
        raise InvalidInput(f"retention.unit must be one of {', '.join(UNITS)}")
    return None if period == 0 else {"period": period, "unit": unit}


routes = [
    Route("/v1/users/{user}/buckets", list_buckets, methods=["GET"]),
    Route("/v1/users/{user}/buckets", create_bucket, methods=["POST"]),
    Route("/v1/users/{user}/buckets/{bucket}", read_bucket, methods=["GET"]),
    Route("/v1/users/{user}/buckets/{bucket}", update_bucket, methods=["PUT"]),
    Route("/v1/users/{user}/buckets/{bucket}", delete_bucket, methods=["DELETE"]),
    Route("/v1/users/{user}/buckets/{bucket}/data", write_data, methods=["POST"]),
    Route("/v1/users/{user}/buckets/{bucket}/data", read_data, methods=["GET"]),
    Route("/v1/users/{user}/buckets/{bucket}/data", clear_data, methods=["DELETE"]),
    Route("/v2/users/{user}/buckets/{bucket}/data", read_data, methods=["GET"]),
]
