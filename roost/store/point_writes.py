"""One caller's write of points into a bucket, as both stores queue it for their group commit
(:mod:`roost.store.group_commit`): its rows encoded before it is queued, so that a value that
cannot be stored fails this write alone and never the group it would have joined."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from roost.errors import InvalidInput

TS_MIN, TS_MAX = -(2**63), 2**63 - 1  # a ts is a 64-bit integer in both stores
FREE_TS_STEPS = 1000  # taken ts skipped before a point that must not replace one is refused
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # made once: stateless


class PointWrite(NamedTuple):
    """One caller's write: its rows (owner, bucket, ts, JSON text), all or none; ``replace``:
    a point at a taken ts replaces it, else it takes the first free ts after it."""

    owner: str
    bucket: str
    rows: list[tuple[str, str, int, str]]
    replace: bool


def point_write(
    owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
) -> PointWrite:
    """The rows of a write: ValueError or TypeError for a value JSON cannot hold, InvalidInput
    for a ts beyond 64 bits."""
    rows = []
    for ts, value in points:
        if not TS_MIN <= ts <= TS_MAX:
            raise InvalidInput("a number is too large to be stored")
        rows.append((owner, bucket, ts, _JSON.encode(value)))
    return PointWrite(owner, bucket, rows, replace)
