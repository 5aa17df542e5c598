"""The file formats of a bucket export (:mod:`roost.buckets.exports`): CSV, JSON and ARFF, a page
of points at a time, and the three ways of writing a timestamp. Pure: text in, text out.

Every format writes a point as its ``ts`` plus the top-level fields of its value (a value that is
not a JSON object is one field, ``val``, as ``GET /v2/.../data`` shows it):

- ``json``: one JSON array, an object ``{"ts": ..., <fields>}`` per point, in ts order.
- ``csv``: Thinger's dialect (its Node-RED node's sample export): ``;``-separated, a header of
  every field name seen in the export plus ``ts``, sorted, then one line per point. A string is
  quoted (``"`` doubled inside), a number or ``true``/``false`` is not, an object or array is its
  JSON text quoted, a field the point lacks (or null) is empty.
- ``arff`` (Weka): ``@RELATION <bucket>``, an ``@ATTRIBUTE`` per column (``ts`` a DATE for
  ``iso``, else NUMERIC; a field NUMERIC when every value it has is a number, else STRING), then
  ``@DATA`` with ``,``-separated rows, strings in single quotes and ``?`` for a missing value.

``timestamp_format``: ``iso`` (``2024-07-15T22:00:35.304Z``, UTC, ms), ``milliseconds`` (the
integer ts) or ``seconds`` (ts / 1000: a whole number, or with its ms as decimals).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from roost.errors import InvalidInput

DATA_TYPES = ("csv", "json", "arff")
TIMESTAMP_FORMATS = ("iso", "seconds", "milliseconds")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "arff": "text/plain; charset=utf-8",
}
TS = "ts"
VALUE = "val"  # the one field of a point whose value is not a JSON object
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Format(Protocol):
    """What an export writes: :meth:`start`, :meth:`page` per page of points, :meth:`end`."""

    def start(self) -> str: ...

    def page(self, points: Iterable[tuple[int, Any]]) -> str: ...

    def end(self) -> str: ...


def point_fields(value: Any) -> Mapping[str, Any]:
    """The fields a point is exported with, ``ts`` aside."""
    return value if isinstance(value, dict) else {VALUE: value}


def timestamp(ts: int, timestamp_format: str) -> str | int | float:
    if timestamp_format == "milliseconds":
        return ts
    if timestamp_format == "seconds":
        return ts // 1000 if ts % 1000 == 0 else ts / 1000
    moment = _EPOCH + datetime.timedelta(milliseconds=ts)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ts % 1000:03d}Z"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---- JSON -------------------------------------------------------------------------------------


class JsonFormat:
    """One JSON array, written as the points come."""

    def __init__(self, timestamp_format: str) -> None:
        self.timestamp_format = timestamp_format
        self._first = True

    def start(self) -> str:
        return "["

    def page(self, points: Iterable[tuple[int, Any]]) -> str:
        out = []
        for ts, value in points:
            fields = {TS: timestamp(ts, self.timestamp_format)}
            fields.update((k, v) for k, v in point_fields(value).items() if k != TS)
            out.append(("\n" if self._first else ",\n") + _json(fields))
            self._first = False
        return "".join(out)

    def end(self) -> str:
        return "]\n" if self._first else "\n]\n"


# ---- the columns of CSV and ARFF ----------------------------------------------------------------


class Columns:
    """The fields seen in the points of an export, each with whether every value it has is a
    number; at most ``limit`` of them (:meth:`see` raises InvalidInput past it)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.numeric: dict[str, bool] = {}

    def see(self, value: Any) -> None:
        numeric = self.numeric
        for name, field in point_fields(value).items():
            if name == TS:
                continue
            is_number = _is_number(field) or field is None
            known = numeric.get(name)
            if known is None:
                if len(numeric) >= self.limit:
                    raise InvalidInput(
                        f"the points have more than {self.limit} fields: export them as JSON"
                    )
                numeric[name] = is_number
            elif known and not is_number:
                numeric[name] = False

    def names(self) -> list[str]:
        return sorted(self.numeric)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# ---- CSV --------------------------------------------------------------------------------------


def _csv_text(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return _json(value)
    if isinstance(value, str):
        return _csv_text(value)
    return _csv_text(_json(value))


class CsvFormat:
    def __init__(self, timestamp_format: str, columns: Columns) -> None:
        self.timestamp_format = timestamp_format
        self.names = sorted({*columns.names(), TS})

    def start(self) -> str:
        return ";".join(_csv_text(name) for name in self.names) + "\n"

    def page(self, points: Iterable[tuple[int, Any]]) -> str:
        lines = []
        for ts, value in points:
            fields = point_fields(value)
            stamp = timestamp(ts, self.timestamp_format)
            cells = (_csv_cell(stamp if n == TS else fields.get(n)) for n in self.names)
            lines.append(";".join(cells) + "\n")
        return "".join(lines)

    def end(self) -> str:
        return ""


# ---- ARFF -------------------------------------------------------------------------------------


def _arff_text(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + escaped.replace("\n", "\\n").replace("\r", "\\r") + "'"


def _arff_cell(value: Any) -> str:
    if value is None:
        return "?"
    if _is_number(value):
        return _json(value)
    return _arff_text(value if isinstance(value, str) else _json(value))


class ArffFormat:
    def __init__(self, timestamp_format: str, columns: Columns, relation: str) -> None:
        self.timestamp_format = timestamp_format
        self.columns = columns
        self.names = columns.names()
        self.relation = relation

    def start(self) -> str:
        iso = self.timestamp_format == "iso"
        ts_kind = "DATE \"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'\"" if iso else "NUMERIC"
        lines = [f"@RELATION {_arff_text(self.relation)}", "", f"@ATTRIBUTE ts {ts_kind}"]
        for name in self.names:
            kind = "NUMERIC" if self.columns.numeric[name] else "STRING"
            lines.append(f"@ATTRIBUTE {_arff_text(name)} {kind}")
        return "\n".join([*lines, "", "@DATA", ""])

    def page(self, points: Iterable[tuple[int, Any]]) -> str:
        lines = []
        for ts, value in points:
            fields = point_fields(value)
            cells = [_arff_cell(timestamp(ts, self.timestamp_format))]
            cells.extend(_arff_cell(fields.get(name)) for name in self.names)
            lines.append(",".join(cells) + "\n")
        return "".join(lines)

    def end(self) -> str:
        return ""
