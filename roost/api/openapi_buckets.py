"""The OpenAPI part of data buckets (``buckets.py``), built with the helpers of
:mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from collections.abc import Mapping

from roost.api import buckets as b
from roost.api.openapi import (
    BAD_BODY,
    BAD_PAGE,
    PAGING,
    USER,
    Schema,
    _array,
    _body,
    _id,
    _obj,
    _ok,
    _op,
    _param,
    _path_param,
    _record,
    _t,
)
from roost.api.validate import TEXT_LIMIT
from roost.ids import BUCKET, DEVICE
from roost.store import aggregate
from roost.store.aggregate import MAX_TS

BUCKET_ID = _path_param("bucket", "Bucket id", _id(BUCKET))
MS = "ms since the epoch"


def _config() -> Schema:
    return _obj(
        {
            "source": {"enum": list(b.SOURCES)},
            "device": _id(DEVICE),
            "resource": _t("string", maxLength=TEXT_LIMIT),
            "update": {"enum": list(b.UPDATES), "default": "interval"},
            "interval": _t("integer", minimum=1, maximum=b.MAX_INTERVAL, description="seconds"),
        },
        ["source"],
        description="Where the points come from: `write` (devices' bucket writes), `api`"
        " (`POST .../data`) or `device` (the server samples `resource` of `device`; needs"
        " `device`, `resource` and `update`, and `interval` for `update: interval`). Only the"
        " fields of the source are kept.",
    )


def _retention(nullable: bool = True) -> Schema:
    return _obj(
        {
            "period": _t("integer", minimum=0, maximum=b.MAX_PERIOD),
            "unit": {"enum": list(b.UNITS)},
        },
        ["period", "unit"],
        description="How long points are kept; null or a period of 0: for ever",
    ) | ({"type": ["object", "null"]} if nullable else {})


def bucket_schemas() -> dict[str, Schema]:
    text = _t("string", True, maxLength=TEXT_LIMIT)
    settings = {
        "name": text,
        "description": text,
        "enabled": _t("boolean", True, default=True),
        "config": _config(),
        "retention": _retention(),
    }
    point = _t("object", description="Any fields; `ts` (ms, optional) is the point's time")
    return {
        "BucketCreate": _obj(
            {"bucket": _id(BUCKET), **settings},
            ["bucket"],
            description="`name` defaults to the id, `enabled` to true, `config` to"
            ' `{"source": "write"}`.',
        ),
        "BucketUpdate": _obj(
            {
                "bucket": _t("string", True, description="Ignored if it is the id, else 400"),
                **settings,
            },
            description="Absent fields are left unchanged.",
        ),
        "Bucket": _record(
            {
                "bucket": _t("string"),
                "name": _t("string"),
                "description": _t("string"),
                "enabled": _t("boolean"),
                "config": _t("object"),
                "retention": _retention(),
                "created": _t("integer", description=MS),
                "modified": _t("integer", description=MS),
            }
        ),
        "BucketWrite": {
            "anyOf": [point, _t("array", items=point, minItems=1, maxItems=b.MAX_POINTS)],
            "description": "One point or an array of them; a point at a `ts` the bucket holds"
            " replaces it; without `ts`, the time of the request (when no point of the request"
            " has a `ts`, each takes the first free ms from then: none replaces another).",
        },
        "BucketCleared": _record({"deleted": _t("integer", minimum=0)}),
        "BucketPointV1": _obj(
            {"ts": _t("integer", description=MS), "val": {}},
            ["ts"],
            description="A point `{ts, val}`; aggregated (`agg`), a bucket's start `ts` and its"
            " values under the aggregation's name instead of `val` (`{ts, mean: {...}}`)",
        ),
        "BucketPointV2": _obj(
            {"ts": _t("integer", description=MS)},
            ["ts"],
            description="The point's fields beside `ts` (a value that is not an object: `val`)",
        ),
    }


def _read_params() -> list[Schema]:
    def bound(name: str, which: str) -> Schema:
        desc = f"{which} ts, inclusive, {MS}; 0 or absent: no bound"
        return _param("query", name, desc, _t("integer", minimum=0, maximum=MAX_TS))

    items = _t("integer", minimum=1, maximum=b.MAX_ITEMS, default=b.MAX_ITEMS)
    sort = {"enum": ["asc", "desc"], "default": "desc"}
    return [
        _param("query", "items", "At most this many points", items),
        bound("min_ts", "Lowest"),
        bound("max_ts", "Highest"),
        _param("query", "sort", "`desc`: the latest first; `asc`: the oldest first", sort),
        *_aggregate_params(),
    ]


def _aggregate_params() -> list[Schema]:
    periods = [*aggregate.PERIODS, *aggregate.ALIASES]
    functions = {"enum": list(aggregate.FUNCTIONS), "default": "mean"}
    return [
        _param(
            "query",
            "agg",
            "One row per bucket of this period instead of points (`5m`, `15m`, `30m`: the"
            " Node-RED node's names of `5min`...): fixed periods are slices of the local wall"
            " clock (in UTC, multiples since the epoch), `1d` starts at local midnight, `1w` on"
            " Monday, `1mo`/`3mo`/`6mo` on the 1st of the month (of Jan/Apr/Jul/Oct, Jan/Jul),"
            " `1y` on January 1st. Rows are the buckets that start within `min_ts`..`max_ts`",
            {"enum": ["", *periods]},
        ),
        _param(
            "query",
            "agg_type",
            "How each numeric field is aggregated (`count`: points carrying it; `spread`:"
            " max - min; `stddev`: sample standard deviation); `median` and `mode` are refused",
            functions,
        ),
        _param(
            "query",
            "tz",
            "IANA time zone of the buckets' boundaries (daylight saving followed)",
            _t("string", maxLength=64, default="UTC"),
        ),
    ]


def bucket_paths() -> dict[str, Schema]:
    one, user = [USER, BUCKET_ID], [USER]
    bucket, deleted = _ok("The bucket", "Bucket"), _ok("Deleted (empty body)")
    missing: Mapping[int, str | None] = {404: "Bucket not found"}
    invalid = "Invalid body, bucket id, config or retention"
    read_errors = {
        400: "Invalid items, min_ts, max_ts, sort, agg, agg_type or tz, transform asked for, or an"
        " aggregation over too long a span in a zone with daylight saving (narrow min_ts/max_ts)",
        **missing,
    }
    write_errors = {
        **BAD_BODY,
        400: "Invalid body or ts, bucket disabled or filled from a device",
        **missing,
    }
    text = (
        "ReadBucket",
        "The bucket's points in a time range, the latest first unless `sort=asc`; page by"
        " moving `max_ts` (desc) or `min_ts` (asc) past the last `ts`. With `agg`, one row per"
        " bucket of time: v2 `{ts, field: value}`, v1 `{ts, <agg_type>: {field: value}}`, over"
        " the numeric fields; `transform` and `group_by` are refused (400).",
    )
    v1 = _ok("Points as `{ts, val}` (aggregated: `{ts, <agg_type>}`)", _array("BucketPointV1"))
    v2 = _ok("Points as `{ts, ...fields}`", _array("BucketPointV2"))
    return {
        "/v1/users/{user}/buckets": {
            "get": _op(
                "listBuckets",
                _ok("Buckets", _array("Bucket")),
                [*user, *PAGING],
                BAD_PAGE,
                text=("ListBuckets", "The user's buckets, by id."),
            ),
            "post": _op(
                "createBucket",
                bucket,
                user,
                {**BAD_BODY, 400: invalid + ", or the id exists", 404: "User not found"},
                _body("BucketCreate"),
                ("CreateBucket", "Creates a bucket."),
            ),
        },
        "/v1/users/{user}/buckets/{bucket}": {
            "get": _op(
                "readBucket",
                bucket,
                one,
                missing,
                text=("ReadBucketConfig", "One bucket's settings."),
            ),
            "put": _op(
                "updateBucket",
                bucket,
                one,
                {**BAD_BODY, 400: invalid, **missing},
                _body("BucketUpdate"),
                ("UpdateBucket", "Changes a bucket's settings."),
            ),
            "delete": _op(
                "deleteBucket",
                deleted,
                one,
                missing,
                text=("DeleteBucket", "Deletes a bucket and every point of it."),
            ),
        },
        "/v1/users/{user}/buckets/{bucket}/data": {
            "get": _op("readBucketData", v1, [*one, *_read_params()], read_errors, text=text),
            "post": _op(
                "writeBucketData",
                _ok("Every point committed (empty body)"),
                one,
                write_errors,
                _body("BucketWrite"),
                ("WriteBucket", "Stores points; answers once they are committed."),
            ),
            "delete": _op(
                "clearBucketData",
                _ok("How many points were deleted", "BucketCleared"),
                [*one, *_read_params()[1:3]],
                {400: "Invalid min_ts or max_ts", **missing},
                text=(
                    "ClearBucket",
                    "Deletes the bucket's points, all of them or those from `min_ts` to"
                    " `max_ts`. Not in Thinger's specs; its console and permissions have it.",
                ),
            ),
        },
        "/v2/users/{user}/buckets/{bucket}/data": {
            "get": _op("readBucketDataV2", v2, [*one, *_read_params()], read_errors, text=text),
        },
    }
