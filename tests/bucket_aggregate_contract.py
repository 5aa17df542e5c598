"""The Store contract for aggregated bucket reads and retention, as plain async tests.

Each expected value is computed here, in plain Python over the points the test wrote, with the
bucket boundaries written out as wall-clock datetimes in the zone (not with roost's arithmetic).
A module per implementation imports these tests with ``import *`` next to its ``store`` fixture.
"""

from __future__ import annotations

import random
import statistics
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from roost.store import Store, User
from roost.store.aggregate import AggregateQuery, AggregateRow, period
from roost.store.base import Bucket

MADRID = ZoneInfo("Europe/Madrid")
MINUTE = 60_000
HOUR = 60 * MINUTE


async def _bucket_with(store: Store, points: Sequence[tuple[int, Any]], bucket: str = "b") -> None:
    if await store.get_user("alice") is None:
        await store.create_user(User("alice", "$argon2id$h", "user", 0))
    await store.create_bucket(
        Bucket("alice", bucket, bucket, "", True, {"source": "api"}, None, 0, 0)
    )
    for start in range(0, len(points), 5000):
        await store.write_points("alice", bucket, points[start : start + 5000])


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _expected(
    points: Sequence[tuple[int, Any]], starts: Sequence[int], fn: str
) -> list[AggregateRow]:
    """Each point into the last of ``starts`` at or before it; per bucket and numeric field,
    ``fn`` of the values (bools and texts are not numbers)."""
    groups: dict[int, dict[str, list[float]]] = {}
    for ts, value in points:
        start = starts[bisect_right(starts, ts) - 1]
        for name, field in value.items():
            if isinstance(field, int | float) and not isinstance(field, bool):
                groups.setdefault(start, {}).setdefault(name, []).append(field)
    functions = {
        "count": len,
        "sum": sum,
        "mean": statistics.fmean,
        "min": min,
        "max": max,
        "spread": lambda v: max(v) - min(v),
        "stddev": statistics.stdev,
    }
    return [
        AggregateRow(start, {k: functions[fn](v) for k, v in sorted(groups[start].items())})
        for start in sorted(groups)
    ]


def _close(got: list[AggregateRow], want: list[AggregateRow]) -> None:
    assert [row.ts for row in got] == [row.ts for row in want]
    for g, w in zip(got, want, strict=True):
        assert g.values.keys() == w.values.keys(), g.ts
        for name in w.values:
            assert g.values[name] == pytest.approx(w.values[name], rel=1e-9, abs=1e-9), g.ts


def _query(agg: str, fn: str, tz: str = "UTC", **more: Any) -> AggregateQuery:
    return AggregateQuery(period(agg), fn, tz, **more)


@pytest.mark.parametrize("fn", ["count", "max", "mean", "min", "sum", "spread", "stddev"])
async def test_hourly_aggregates_in_utc_match_plain_python(store: Store, fn: str) -> None:
    rng = random.Random(11)
    t0 = _ms(datetime(2026, 5, 4, 0, 0, tzinfo=UTC))
    points: list[tuple[int, Any]] = []
    for i in range(600):  # 10 hours, one a minute, fields that come and go
        value: dict[str, Any] = {"t": rng.randint(-50, 50), "label": "x", "on": True}
        if i % 3:
            value["h"] = rng.uniform(0, 100)
        points.append((t0 + i * MINUTE + rng.randint(0, 59_999), value))
    await _bucket_with(store, points)
    starts = [t0 + h * HOUR for h in range(11)]
    got = await store.aggregate_points("alice", "b", _query("1h", fn))
    _close(got, _expected(points, starts, fn))
    newest = await store.aggregate_points("alice", "b", _query("1h", fn, descending=True, limit=3))
    _close(newest, _expected(points, starts, fn)[::-1][:3])


async def test_days_in_madrid_follow_the_clock_across_the_march_change(store: Store) -> None:
    # 2026-03-29 is the last Sunday of March: 02:00 CET becomes 03:00 CEST, a 23-hour day
    first = _ms(datetime(2026, 3, 27, 0, 0, tzinfo=MADRID))
    last = _ms(datetime(2026, 3, 31, 0, 0, tzinfo=MADRID))
    points = [(ts, {"v": n}) for n, ts in enumerate(range(first, last, 20 * MINUTE))]
    await _bucket_with(store, points)
    days = [_ms(datetime(2026, 3, d, 0, 0, tzinfo=MADRID)) for d in range(27, 31)]
    assert days[3] - days[2] == 23 * HOUR
    for fn in ("count", "mean", "sum"):
        got = await store.aggregate_points("alice", "b", _query("1d", fn, "Europe/Madrid"))
        _close(got, _expected(points, days, fn))
    counts = await store.aggregate_points("alice", "b", _query("1d", "count", "Europe/Madrid"))
    assert [row.values["v"] for row in counts] == [72, 72, 69, 72]
    # 3-hour buckets keep to the wall clock: 00:00 to 03:00 on the 29th lasts two hours
    wall = [
        datetime(2026, 3, d, h, 0, tzinfo=MADRID) for d in range(27, 31) for h in range(0, 24, 3)
    ]
    hours3 = sorted({_ms(w) for w in wall if _ms(w) < last})
    got3 = await store.aggregate_points("alice", "b", _query("3h", "count", "Europe/Madrid"))
    _close(got3, _expected(points, hours3, "count"))
    assert got3[16].values["v"] == 6  # 2026-03-29 00:00-03:00 local, two real hours


async def test_hours_in_madrid_across_the_october_change_repeat_the_repeated_hour(
    store: Store,
) -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-03:00 local happens twice: two buckets
    first = _ms(datetime(2026, 10, 24, 22, 0, tzinfo=MADRID))
    last = _ms(datetime(2026, 10, 25, 6, 0, tzinfo=MADRID))
    points = [(ts, {"v": 1}) for ts in range(first, last, 10 * MINUTE)]
    await _bucket_with(store, points)
    starts = list(range(first, last, HOUR))  # every real hour starts a local hour here
    got = await store.aggregate_points("alice", "b", _query("1h", "count", "Europe/Madrid"))
    _close(got, _expected(points, starts, "count"))
    assert len(got) == 9 and all(row.values["v"] == 6 for row in got)
    day = await store.aggregate_points("alice", "b", _query("1d", "count", "Europe/Madrid"))
    midnight = _ms(datetime(2026, 10, 25, 0, 0, tzinfo=MADRID))
    assert [row.ts for row in day] == [_ms(datetime(2026, 10, 24, tzinfo=MADRID)), midnight]
    assert day[1].values["v"] == (last - midnight) // (10 * MINUTE)  # 7 real hours


@pytest.mark.parametrize("tz", ["UTC", "Europe/Madrid"])
async def test_months_quarters_years_and_weeks_start_on_their_calendar_days(
    store: Store, tz: str
) -> None:
    zone = ZoneInfo(tz)
    first = _ms(datetime(2025, 11, 20, tzinfo=zone))
    last = _ms(datetime(2026, 8, 10, tzinfo=zone))
    points = [(ts, {"v": (ts // HOUR) % 17}) for ts in range(first, last, 5 * HOUR)]
    await _bucket_with(store, points)

    def month_starts(step: int) -> list[int]:
        return [
            _ms(datetime(2025 + (m - 1) // 12, (m - 1) % 12 + 1, 1, tzinfo=zone))
            for m in range(1, 37, step)
        ]

    for agg, starts in (
        ("1mo", month_starts(1)),
        ("3mo", month_starts(3)),
        ("6mo", month_starts(6)),
        ("1y", month_starts(12)),
    ):
        got = await store.aggregate_points("alice", "b", _query(agg, "mean", tz))
        _close(got, _expected(points, starts, "mean"))
    monday = datetime(2025, 11, 17, tzinfo=zone)  # a Monday
    weeks = [
        _ms(datetime.combine(monday.date() + timedelta(weeks=w), monday.timetz()))
        for w in range(40)
    ]
    got_weeks = await store.aggregate_points("alice", "b", _query("1w", "sum", tz))
    _close(got_weeks, _expected(points, weeks, "sum"))
    assert all(datetime.fromtimestamp(r.ts / 1000, zone).weekday() == 0 for r in got_weeks)


async def test_aggregated_rows_page_by_their_bounds_each_bucket_once(store: Store) -> None:
    t0 = _ms(datetime(2026, 1, 1, tzinfo=UTC))
    points = [(t0 + i * 7 * MINUTE, {"v": i}) for i in range(3100)]  # 362 hours
    await _bucket_with(store, points)
    want = _expected(points, list(range(t0, t0 + 400 * HOUR, HOUR)), "sum")
    for descending in (False, True):
        seen: list[AggregateRow] = []
        bounds: dict[str, int] = {}
        while True:
            page = await store.aggregate_points(
                "alice", "b", _query("1h", "sum", limit=40, descending=descending, **bounds)
            )
            seen += page
            if len(page) < 40:
                break
            # the latest first: below the last row's start; the oldest first: past its bucket
            last = page[-1].ts
            bounds = {"max_ts": last - 1} if descending else {"min_ts": last + HOUR}
        _close(seen, want[::-1] if descending else want)
    # only the points within the bounds count: the buckets cut by min_ts and max_ts hold theirs
    inside = await store.aggregate_points(
        "alice", "b", _query("1h", "count", min_ts=t0 + 30 * MINUTE, max_ts=t0 + 90 * MINUTE)
    )
    assert inside == [
        AggregateRow(t0, {"v": 4}),  # the points at 35, 42, 49, 56 min
        AggregateRow(t0 + HOUR, {"v": 4}),  # at 63, 70, 77, 84 min
    ]


async def test_aggregating_an_empty_range_or_bucket_gives_no_rows(store: Store) -> None:
    await _bucket_with(store, [(HOUR * 1000, {"v": 1}), (HOUR * 2000, {"s": "text"})])
    assert await store.aggregate_points("alice", "b", _query("1d", "mean", max_ts=HOUR)) == []
    rows = await store.aggregate_points("alice", "b", _query("1y", "count"))
    assert [row.values for row in rows] == [{"v": 1}]  # the text-only point has no numbers
    await _bucket_with(store, [], bucket="empty")
    assert await store.aggregate_points("alice", "empty", _query("5min", "max")) == []


async def test_expire_points_deletes_the_oldest_in_bounded_batches(store: Store) -> None:
    await _bucket_with(store, [(ts, {"v": ts}) for ts in range(1, 101)])
    await _bucket_with(store, [(ts, {"v": ts}) for ts in range(1, 11)], bucket="other")
    assert await store.expire_points("alice", "b", 51, 30) == 30
    assert await store.expire_points("alice", "b", 51, 30) == 20
    assert await store.expire_points("alice", "b", 51, 30) == 0
    left = await store.read_points("alice", "b", None, None, 1000)
    assert [p.ts for p in left] == list(range(51, 101))
    assert len(await store.read_points("alice", "other", None, None, 1000)) == 10


async def test_retained_buckets_are_listed_across_owners(store: Store) -> None:
    await _bucket_with(store, [], bucket="kept")
    await store.create_user(User("bob", "$argon2id$h", "user", 0))
    for owner, name in (("bob", "a"), ("alice", "z")):
        await store.create_bucket(
            Bucket(
                owner, name, name, "", True, {"source": "api"}, {"period": 1, "unit": "days"}, 0, 0
            )
        )
    listed = await store.list_retained_buckets()
    assert [(b.owner, b.bucket, b.retention) for b in listed] == [
        ("alice", "z", {"period": 1, "unit": "days"}),
        ("bob", "a", {"period": 1, "unit": "days"}),
    ]


async def test_sums_of_integers_are_integers_and_never_overflow(store: Store) -> None:
    big = 2**62
    await _bucket_with(store, [(1, {"n": 2, "big": big, "x": 0.5}), (2, {"n": 3, "big": big})])
    [row] = await store.aggregate_points("alice", "b", _query("1d", "sum"))
    assert row.values == {"big": 2.0**63, "n": 5, "x": 0.5}
    assert isinstance(row.values["n"], int) and isinstance(row.values["big"], float)
    [spread] = await store.aggregate_points("alice", "b", _query("1d", "spread"))
    assert spread.values == {"big": 0, "n": 1, "x": 0}
    huge = [(ts, {"f": 1e308, "n": 1}) for ts in (10, 11)]
    await _bucket_with(store, huge, bucket="huge")
    [row] = await store.aggregate_points("alice", "huge", _query("1d", "sum"))
    assert row.values == {"n": 2}  # 2e308 is no JSON number: the field is left out


async def test_points_at_the_ends_of_time_aggregate_in_zones_east_and_west(store: Store) -> None:
    """ts 0 and the last ms of year 9999 (local year 10000 east of UTC, 1969 west of it), with no
    bounds given: every zone's buckets hold them, none raises."""
    last = 253_402_300_799_999
    await _bucket_with(store, [(0, {"v": 1}), (last, {"v": 2}), (last - 40 * HOUR, {"v": 3})])
    got = await store.aggregate_points(
        "alice", "b", AggregateQuery(period("1h"), "sum", tz="Asia/Tokyo", descending=True)
    )
    # Tokyo's hours are UTC's (9 h ahead); the last one is in its local year 10000
    assert [(row.ts, row.values) for row in got] == [
        (last + 1 - HOUR, {"v": 2}),
        ((last - 40 * HOUR) // HOUR * HOUR, {"v": 3}),
        (0, {"v": 1}),
    ]
    for key, rows_wanted in (("America/Los_Angeles", 2), ("Pacific/Kiritimati", 3)):
        zone = ZoneInfo(key)  # Kiritimati: 10:40 h behind UTC in 1970, 14 h ahead since 1995
        rows = await store.aggregate_points(
            "alice", "b", AggregateQuery(period("1y"), "count", tz=key, descending=False)
        )
        year = datetime.fromtimestamp(0, zone).year  # 1969 in both
        assert rows[0] == AggregateRow(_ms(datetime(year, 1, 1, tzinfo=zone)), {"v": 1})
        assert len(rows) == rows_wanted  # at +14 h the last ms is in local year 10000
