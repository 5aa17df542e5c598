"""Aggregated bucket reads (thinger-api.md 2.10: ``agg``, ``agg_type``, ``tz``): the periods, their
boundaries in a time zone, and the walk that asks a store for partial sums. Pure: no database, no
clock; every store (SQLite today, PostgreSQL later) runs the same walk with its own statements.

Periods (Thinger's names; ``5m``, ``15m`` and ``30m``, as the Node-RED node sends them, name the
same periods as ``5min``, ``15min`` and ``30min``): ``5min 15min 30min 1h 3h 6h 12h`` are slices
of the local wall clock (a 3h bucket starts at 00:00, 03:00, ... local time), ``1d`` starts at local
midnight, ``1w`` at local midnight of a Monday (ISO 8601 weeks), ``1mo 3mo 6mo`` at local midnight
of the 1st of January, April, July, October (3mo) or January and July (6mo) or of every month
(1mo), ``1y`` at local midnight of January 1st. In UTC (the default zone) the fixed periods are
multiples of their length since the epoch. Across a daylight-saving change a bucket keeps to the
wall clock: the day of the change lasts 23 or 25 hours, a repeated hour is two 1h buckets, and a
boundary that falls in skipped time starts at the change itself.

A row is the start of its bucket (``ts``, ms) and, for each numeric field of the stored objects,
the aggregate of its values in that bucket (``count``: how many points carry the field; ``spread``:
max - min; ``stddev``: the sample standard deviation, absent below two values). Only the points
within [min_ts, max_ts] count, as a SQL ``WHERE ts BETWEEN min_ts AND max_ts GROUP BY bucket``
would have them: a bucket that begins before min_ts (the Node-RED node asks for "the last 30
minutes" by the hour) is a row of its points from min_ts on, and buckets without points give no
row. A client paging the latest first moves max_ts to the last row's ``ts`` - 1 and gets every
bucket once; paging the oldest first, it moves min_ts to the end of the last row's bucket.

The walk reads the points in windows, each one statement, so that a store with one writer runs
other work between them. The store groups each slice of constant UTC offset (zones change offset
at their transitions) by a key finer than or equal to the bucket (:class:`Grouping`) and returns,
per group and field, count, sum, sum of squares, min, max and the group's first ts; the walk maps
each group to its bucket by that ts and adds the groups of one bucket up.

The time-zone work runs on the event loop and is bounded per read: a zone that never changes its
offset (UTC, Etc/UTC, Etc/GMT-14, ...) is one slice; in another, the walk looks at a window a
:data:`PIECE` at a time from a point to the last point within it (a window may span centuries of
sparse points: the empty time between them costs nothing), probing the offset every
:data:`STEP` there and bisecting each change to the ms. A read that would probe more than
:data:`MAX_PROBES` times is refused (400: narrow min_ts/max_ts). Timestamps end at
:data:`MAX_TS`, the last ms of year 9999; a local time past it (east of UTC) is computed at the
offset of December 30th, 9999, and starts of buckets stay exact there.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from roost.errors import InvalidInput

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK_SHIFT = 4 * DAY  # 1970-01-01 was a Thursday: Mondays are 4 days after the epoch, mod 7
FUNCTIONS = ("count", "max", "mean", "min", "spread", "stddev", "sum")
REFUSED_FUNCTIONS = ("median", "mode")  # in Thinger's list, not computed here
# how finely offset changes are looked for (then bisected to the ms): since 1970 the tz database
# has no two changes of one zone's offset less than 6.9 days apart (the closest: Brazil in 2000,
# Gaza's Ramadan rules), so a probe every 3 days sees each change
STEP = 3 * DAY
MAX_TS = 253_402_300_799_999  # the last ms of year 9999 (datetime's last year): the latest ts
PIECE = 366 * DAY  # a window in a zone that changes its offset is sliced a piece at a time
LAST_PROBE = MAX_TS - 2 * DAY  # offsets are probed up to here (see offset_ms)
MAX_PROBES = 50_000  # offset probes one read may make: some 270 years of points, 40 ms
WINDOW_VALUES = 50_000  # numeric values one statement of the walk should aggregate, about


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    months: int = 0  # calendar periods: 1, 3, 6 or 12 months
    size: int = 0  # fixed periods: their wall-clock length in ms
    shift: int = 0  # fixed periods: where their multiples start (weeks: on Mondays)

    @property
    def nominal(self) -> int:
        """About how long a bucket lasts, in ms (to size the windows of the walk)."""
        return self.size or self.months * 30 * DAY


PERIODS = {
    p.name: p
    for p in (
        Period("5min", size=5 * MINUTE),
        Period("15min", size=15 * MINUTE),
        Period("30min", size=30 * MINUTE),
        Period("1h", size=HOUR),
        Period("3h", size=3 * HOUR),
        Period("6h", size=6 * HOUR),
        Period("12h", size=12 * HOUR),
        Period("1d", size=DAY),
        Period("1w", size=7 * DAY, shift=WEEK_SHIFT),
        Period("1mo", months=1),
        Period("3mo", months=3),
        Period("6mo", months=6),
        Period("1y", months=12),
    )
}
ALIASES = {"5m": "5min", "15m": "15min", "30m": "30min"}  # the Node-RED node's spellings


def period(name: str) -> Period:
    found = PERIODS.get(ALIASES.get(name, name))
    if found is None:
        raise InvalidInput(f"agg must be one of {', '.join(PERIODS)}")
    return found


def function(name: str) -> str:
    if name in REFUSED_FUNCTIONS:
        raise InvalidInput(f"agg_type {name} is not supported: use one of {', '.join(FUNCTIONS)}")
    if name not in FUNCTIONS:
        raise InvalidInput(f"agg_type must be one of {', '.join(FUNCTIONS)}")
    return name


def zone(name: str) -> ZoneInfo:
    """An IANA time zone by name (``Europe/Madrid``, ``UTC``)."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise InvalidInput("tz must be an IANA time zone name, such as UTC or Europe/Madrid")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"tz {name!r} is not a known IANA time zone") from None


@dataclass(frozen=True, slots=True)
class AggregateQuery:
    period: Period
    function: str  # one of FUNCTIONS
    tz: str = "UTC"  # IANA name
    min_ts: int | None = None  # only the points within [min_ts, max_ts] count
    max_ts: int | None = None
    limit: int = 1000
    descending: bool = False


@dataclass(frozen=True, slots=True)
class AggregateRow:
    ts: int  # the start of the bucket, ms
    values: dict[str, float | int]  # numeric field -> its aggregate


@dataclass(frozen=True, slots=True)
class Grouping:
    """How a store groups the points of one slice [lo, hi) of constant UTC offset ``offset``
    (ms, local = ts + offset): for a fixed period, by local - ((local - shift) mod size); for a
    calendar one, by the local month's index (year * 12 + month - 1) integer-divided by
    ``months``. Every group lies within one bucket; the walk adds up those of the same bucket."""

    offset: int
    period: Period


@dataclass(slots=True)
class Partial:
    """What a store returns per group and field: the group's first ts, and count, how many are
    not integers, sum, sum of squares, min and max of the field's numeric values."""

    first: int
    name: str
    count: int
    reals: int  # how many of the values are not integers
    total: float
    squares: float
    low: float | int
    high: float | int

    def add(self, other: Partial) -> None:
        self.first = min(self.first, other.first)
        self.count += other.count
        self.reals += other.reals
        self.total += other.total
        self.squares += other.squares
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)


# group(lo, hi, grouping) -> partials of the points with lo <= ts < hi
GroupFn = Callable[[int, int, Grouping], Awaitable[Sequence[Partial]]]
# seek(ts, descending) -> the first point's ts >= ts (descending: the last <= ts), or None
SeekFn = Callable[[int, bool], Awaitable[int | None]]


class Probes:
    """How many more times one read may ask a zone for its UTC offset: the walk's work per
    request is bounded, whatever the span between min_ts and max_ts (it runs on the event loop)."""

    __slots__ = ("left",)

    def __init__(self, left: int = MAX_PROBES) -> None:
        self.left = left

    def take(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise InvalidInput(
                "the aggregation crosses too many years of time-zone changes for one read:"
                " narrow min_ts/max_ts, or use a zone with a fixed offset (UTC)"
            )


def fixed_offset(tz: ZoneInfo) -> int | None:
    """The UTC offset (ms) of a zone that never changes it (UTC, Etc/GMT+5, ...), else None."""
    delta = tz.utcoffset(None)  # a ZoneInfo answers None here when its offset ever changes
    return None if delta is None else int(delta.total_seconds() * 1000)


def offset_ms(tz: ZoneInfo, ts: int, probes: Probes | None = None) -> int:
    """The UTC offset (ms) of ``tz`` at ``ts``. Past :data:`LAST_PROBE`, the one there: a local
    time past year 9999 is no datetime, and no zone changes its offset on December 30 or 31."""
    if probes is not None:
        probes.take()
    moment = datetime.fromtimestamp(max(0, min(ts, LAST_PROBE)) / 1000, tz)
    delta = moment.utcoffset() or timedelta()
    return int(delta.total_seconds() * 1000)


def slices(
    tz: ZoneInfo, lo: int, hi: int, probes: Probes | None = None
) -> list[tuple[int, int, int]]:
    """[lo, hi) cut where ``tz`` changes its UTC offset: (start, end, offset) each."""
    fixed = fixed_offset(tz)
    if fixed is not None:
        return [(lo, hi, fixed)]
    out: list[tuple[int, int, int]] = []
    start, current = lo, offset_ms(tz, lo, probes)
    probe = lo
    while probe < hi:
        step_to = min(probe + STEP, hi - 1)
        if offset_ms(tz, step_to, probes) != current:
            low, high = probe, step_to  # the change is in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                same = offset_ms(tz, middle, probes) == current
                low, high = (middle, high) if same else (low, middle)
            out.append((start, high, current))
            start, current = high, offset_ms(tz, high, probes)
            probe = high
        elif step_to == hi - 1:
            break
        else:
            probe = step_to
    out.append((start, hi, current))
    return out


def bucket_start(p: Period, tz: ZoneInfo, ts: int) -> int:
    """The start (ms) of the bucket of ``p`` in ``tz`` that holds ``ts``."""
    fixed = fixed_offset(tz)
    if fixed is not None and p.size:
        return ts - (ts + fixed - p.shift) % p.size
    offset = fixed if fixed is not None else offset_ms(tz, ts)
    if ts + offset > MAX_TS:  # local time is past year 9999: no datetime, and no zone change
        local_ms = ts + offset  # (see offset_ms): wall-clock arithmetic at that offset
        if p.months:  # January 1st of year 10000 starts every calendar period
            return MAX_TS + 1 - offset
        return local_ms - (local_ms - p.shift) % p.size - offset
    local = datetime.fromtimestamp(ts / 1000, tz)
    if p.months:
        index = local.year * 12 + local.month - 1
        index -= index % p.months
        wall = datetime(index // 12, index % 12 + 1, 1)
        fold = 0
    else:
        naive = local.replace(tzinfo=None)
        midnight = naive.replace(hour=0, minute=0, second=0, microsecond=0)
        if p.size >= DAY:  # days and weeks: local midnight (of the Monday)
            days = (midnight - datetime(1970, 1, 1)).days
            days -= (days * DAY - p.shift) % p.size // DAY
            wall, fold = datetime(1970, 1, 1) + timedelta(days=days), 0
        else:
            into = (naive - midnight) // timedelta(milliseconds=1)
            wall = midnight + timedelta(milliseconds=into - into % p.size)
            fold = local.fold  # a repeated hour is two buckets
    # a wall time that does not exist (skipped forward) maps to the change itself (fold 0 reads
    # it with the offset before the change), one that repeats to its first or second occurrence
    start = wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)
    return round(start.timestamp() * 1000)


async def walk(query: AggregateQuery, group: GroupFn, seek: SeekFn) -> list[AggregateRow]:
    """The rows of ``query``, asking ``group`` for windows of points in the query's order until
    ``limit`` whole buckets are known (or the points run out); ``seek`` skips empty stretches.

    Each window is one short statement of its own (a store may run other work between them):
    the first spans at most a day, the next ones as long as about :data:`WINDOW_VALUES` values
    took so far, and never more than the buckets still wanted."""
    tz = zone(query.tz)
    lo = query.min_ts if query.min_ts is not None else 0
    hi = min(MAX_TS, query.max_ts if query.max_ts is not None else MAX_TS)
    probes = Probes()
    buckets: dict[int, dict[str, Partial]] = {}
    cap = DAY
    cursor = await seek(hi if query.descending else lo, query.descending)
    while cursor is not None and lo <= cursor <= hi:
        wanted = query.limit + 1 - len(buckets)
        if wanted <= 0:
            break
        span = max(1, min(wanted * query.period.nominal, cap))
        if query.descending:
            start, end = max(lo, cursor + 1 - span), cursor + 1
        else:
            start, end = cursor, min(hi + 1, cursor + span)
        values = 0
        for part_lo, part_hi, offset in await _slices(tz, start, end, seek, probes):
            for partial in await group(part_lo, part_hi, Grouping(offset, query.period)):
                values += partial.count
                fields = buckets.setdefault(bucket_start(query.period, tz, partial.first), {})
                kept = fields.get(partial.name)
                if kept is None:
                    fields[partial.name] = partial
                else:
                    kept.add(partial)
        cap = (end - start) * WINDOW_VALUES // values if values else (end - start) * 4
        if query.descending and start <= lo:
            break
        cursor = await seek(start - 1, True) if query.descending else await seek(end, False)
    starts = sorted(buckets, reverse=query.descending)[: query.limit]
    return [AggregateRow(s, _values(buckets[s], query.function)) for s in starts]


async def _slices(
    tz: ZoneInfo, start: int, end: int, seek: SeekFn, probes: Probes
) -> list[tuple[int, int, int]]:
    """The slices of the window [start, end) that hold points: in a zone that changes its offset,
    the window is looked at a :data:`PIECE` at a time from its next point to the last point
    within the piece, so that the offsets are probed only where points are (a window may span
    centuries of sparse points), two seeks a piece."""
    if fixed_offset(tz) is not None:
        return slices(tz, start, end)
    out: list[tuple[int, int, int]] = []
    position = start
    while position < end:
        first = await seek(position, False)
        if first is None or first >= end:
            break
        last = await seek(min(end, first + PIECE) - 1, True)
        position = (first if last is None else last) + 1
        out += slices(tz, first, position, probes)
    return out


def _values(fields: dict[str, Partial], fn: str) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name in sorted(fields):
        value = _value(fields[name], fn)
        if value is not None and math.isfinite(value):  # a sum past 1e308 is no number
            out[name] = value
    return out


def _value(p: Partial, fn: str) -> float | int | None:
    if fn == "count":
        return p.count
    if fn == "sum":  # a sum of integers is one, while a float holds it exactly
        exact = p.reals == 0 and p.total.is_integer() and abs(p.total) < 2**53
        return int(p.total) if exact else p.total
    if fn == "mean":
        return p.total / p.count
    if fn == "min":
        return p.low
    if fn == "max":
        return p.high
    if fn == "spread":
        return p.high - p.low
    if p.count < 2:  # stddev of one value: none
        return None
    variance = (p.squares - p.total * p.total / p.count) / (p.count - 1)
    return math.sqrt(max(variance, 0.0))
