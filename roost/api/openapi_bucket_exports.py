"""The OpenAPI part of bucket exports (``bucket_exports.py``), built with the helpers of
:mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from collections.abc import Mapping

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
    _path_param,
    _record,
    _t,
)
from roost.api.openapi_buckets import BUCKET_ID, MS
from roost.buckets.export_formats import DATA_TYPES, TIMESTAMP_FORMATS
from roost.ids import EXPORT_FILE
from roost.store.aggregate import MAX_TS

FILE = _path_param("file", "Export file name, as the export's answer gave it", _id(EXPORT_FILE))
FORMATS = (
    " `csv`: `;`-separated, a sorted header of `ts` and every field seen, strings quoted,"
    " numbers and booleans not, objects and arrays as quoted JSON, missing fields empty."
    " `json`: an array of `{ts, ...fields}`. `arff`: Weka's format. A value that is not an"
    " object is the field `val`. `timestamp_format`: `iso` (UTC, ms), `milliseconds` or"
    " `seconds` (decimals for the ms)."
)


def bucket_export_schemas() -> dict[str, Schema]:
    bound = _t("integer", True, minimum=0, maximum=MAX_TS, description=f"{MS}; 0 or null: none")
    return {
        "BucketExportCreate": _obj(
            {
                "data_type": {"enum": list(DATA_TYPES), "default": DATA_TYPES[0]},
                "timestamp_format": {
                    "enum": list(TIMESTAMP_FORMATS),
                    "default": TIMESTAMP_FORMATS[0],
                },
                "min_ts": bound,
                "max_ts": bound,
                "callback": _t(
                    "string", True, maxLength=0, description="Thinger's; refused unless empty"
                ),
            },
            description="What to export: the points with `min_ts <= ts <= max_ts`." + FORMATS,
        ),
        "BucketExportStarted": _record(
            {
                "file": _t("string", description="The export's file name"),
                "state": {"const": 0, "description": "Started (Thinger's answer)"},
            }
        ),
        "BucketExport": _record(
            {
                "file": _t("string"),
                "bucket": _t("string"),
                "data_type": {"enum": list(DATA_TYPES)},
                "timestamp_format": {"enum": list(TIMESTAMP_FORMATS)},
                "min_ts": _t("integer", description=f"{MS}; 0: no bound"),
                "max_ts": _t("integer", description=f"{MS}; 0: no bound"),
                "created": _t("integer", description=MS),
                "status": {"enum": ["running", "completed", "failed"]},
                "completed": _t("integer", True, description=f"When it ended, {MS}"),
                "points": _t("integer", minimum=0),
                "size": _t("integer", minimum=0, description="Bytes of the file"),
                "error": _t("string", True, description="Why it failed"),
            }
        ),
    }


def bucket_export_paths() -> dict[str, Schema]:
    one = [USER, BUCKET_ID]
    missing: Mapping[int, str | None] = {404: "Bucket not found"}
    no_file: Mapping[int, str | None] = {404: "No such export, or not completed"}
    download = _ok("The file (an attachment)")
    download["content"] = {
        media: {"schema": _t("string")} for media in ("text/csv", "application/json", "text/plain")
    }
    return {
        "/v1/users/{user}/buckets/{bucket}/exports": {
            "get": _op(
                "listBucketExports",
                _ok("Exports", _array("BucketExport")),
                [*one, *PAGING],
                {**BAD_PAGE, **missing},
                text=("ListBucketExports", "The bucket's exports, oldest first."),
            ),
            "post": _op(
                "createBucketExport",
                _ok("Started", "BucketExportStarted"),
                one,
                {
                    **BAD_BODY,
                    400: "Invalid body, or too many exports running or kept",
                    **missing,
                },
                _body("BucketExportCreate"),
                (
                    "CreateBucketExport",
                    "Exports the bucket's points to a file in the background; the"
                    " `bucket_export_completed` event (events socket) tells when it is ready,"
                    " with `url` `file://users/{user}/buckets/{bucket}/{file}`.",
                ),
            ),
        },
        "/v1/users/{user}/buckets/{bucket}/exports/{file}": {
            "get": _op(
                "readBucketExport",
                download,
                [*one, FILE],
                no_file,
                text=("ReadBucketExport", "Downloads a completed export."),
            ),
            "delete": _op(
                "deleteBucketExport",
                _ok("Deleted (empty body)"),
                [*one, FILE],
                no_file,
                text=("DeleteBucketExport", "Deletes an export, stopping it if it runs."),
            ),
        },
    }
