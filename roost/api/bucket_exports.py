"""Bucket exports: /v1/users/{user}/buckets/{bucket}/exports[/{file}] (thinger-api.md 2.10), the
work done by :mod:`roost.buckets.exports`.

``POST`` takes Thinger's body ``{data_type, timestamp_format, min_ts, max_ts}`` (``data_type``
csv, json or arff, default csv; ``timestamp_format`` iso, seconds or milliseconds, default iso;
``min_ts``/``max_ts`` in ms, inclusive, 0, null or absent: no bound) and answers at once
``{"file": name, "state": 0}`` as Thinger does; the file is written in the background and
announced as ``bucket_export_completed`` on the user's events socket, with ``url``
``file://users/{user}/buckets/{bucket}/{file}`` as a private Thinger server sends it. Thinger's
``callback`` (email, endpoint) is refused (400): follow the event instead. Other fields are
ignored (Node-RED may send an empty one).

``GET .../exports`` lists the bucket's exports, oldest first (list conventions: ``count``,
``index``, ``name``), each ``{file, bucket, data_type, timestamp_format, min_ts, max_ts,
created, status (running, completed, failed), completed, points, size, error}``;
``GET .../exports/{file}`` downloads a completed one (as an attachment, ``text/csv``,
``application/json`` or ``text/plain`` for ARFF), ``DELETE`` deletes one, running or not.
Actions: CreateBucketExport, ListBucketExports, ReadBucketExport, DeleteBucketExport, on the
bucket.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import IO, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.json import json_response, read_json_object
from roost.api.paging import named, page_of
from roost.api.validate import timestamp
from roost.buckets.export_formats import DATA_TYPES, MEDIA_TYPES, TIMESTAMP_FORMATS
from roost.buckets.exports import ExportRequest
from roost.errors import InvalidInput
from roost.services import Services

CHUNK = 64 * 1024  # bytes read from an export file at a time, to download it


def _target(request: Request) -> tuple[Services, str, str]:
    services: Services = request.app.state.services
    return services, request.path_params["user"], request.path_params["bucket"]


def _choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> str:
    value = body.get(name)
    if value is None or value == "":
        return choices[0]
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}")
    return str(value)


def _bound(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    return 0 if value is None else timestamp(value, name)  # 0: no bound


def parse_request(body: dict[str, Any]) -> ExportRequest:
    if body.get("callback") not in (None, ""):
        raise InvalidInput(
            "callback is not supported: follow bucket_export_completed on the events socket"
        )
    min_ts, max_ts = _bound(body, "min_ts"), _bound(body, "max_ts")
    if min_ts and max_ts and min_ts > max_ts:
        raise InvalidInput("min_ts must not be after max_ts")
    return ExportRequest(
        data_type=_choice(body, "data_type", DATA_TYPES),
        timestamp_format=_choice(body, "timestamp_format", TIMESTAMP_FORMATS),
        min_ts=min_ts,
        max_ts=max_ts,
    )


async def create_export(request: Request) -> Response:
    services, owner, bucket = _target(request)
    await authorize(request, "CreateBucketExport", owner, bucket)
    body = await read_json_object(request, services.settings.max_body_bytes)
    record = await services.exports.create(owner, bucket, parse_request(body))
    return json_response({"file": record.file, "state": 0})


async def list_exports(request: Request) -> Response:
    services, owner, bucket = _target(request)
    await authorize(request, "ListBucketExports", owner, bucket)
    page = page_of(request)
    records = [
        r for r in await services.exports.list_exports(owner, bucket) if named(page.name, r.file)
    ]
    end = None if page.count is None else page.index + page.count
    return json_response([r.json() for r in records[page.index : end]])


async def read_export(request: Request) -> Response:
    services, owner, bucket = _target(request)
    await authorize(request, "ReadBucketExport", owner, bucket)
    record, opened = await services.exports.open(owner, bucket, request.path_params["file"])
    size = os.fstat(opened.fileno()).st_size
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{record.file}"',
    }
    media_type = MEDIA_TYPES[record.data_type]
    if request.method == "HEAD":  # the headers alone: the file is not read
        opened.close()
        return Response(headers=headers, media_type=media_type)
    return StreamingResponse(_chunks(opened), headers=headers, media_type=media_type)


async def _chunks(opened: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(opened.read, CHUNK):
            yield chunk
    finally:
        opened.close()


async def delete_export(request: Request) -> Response:
    services, owner, bucket = _target(request)
    await authorize(request, "DeleteBucketExport", owner, bucket)
    await services.exports.delete(owner, bucket, request.path_params["file"])
    return Response(status_code=200)


COLLECTION = "/v1/users/{user}/buckets/{bucket}/exports"
ITEM = COLLECTION + "/{file}"
routes = [
    Route(COLLECTION, list_exports, methods=["GET"]),
    Route(COLLECTION, create_export, methods=["POST"]),
    Route(ITEM, read_export, methods=["GET"]),
    Route(ITEM, delete_export, methods=["DELETE"]),
]
