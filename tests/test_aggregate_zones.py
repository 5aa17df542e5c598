"""The time-zone arithmetic of aggregated reads (roost/store/aggregate.py), checked against a
probe of every hour: the cuts where a zone changes its offset, found with far fewer probes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from roost.errors import InvalidInput
from roost.store import aggregate
from roost.store.aggregate import HOUR, MAX_TS, Probes, fixed_offset, offset_ms, slices


def _ms(year: int, month: int = 1) -> int:
    return round(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("key", "first", "last"),
    [
        ("Asia/Gaza", 2040, 2046),  # Ramadan: the offset changes twice within weeks
        ("America/Noronha", 1999, 2002),  # two changes 7 days apart in October 2000
        ("Europe/Madrid", 2024, 2027),
        ("Australia/Lord_Howe", 2024, 2026),  # half-hour daylight saving time
    ],
)
def test_slices_cut_at_every_offset_change(key: str, first: int, last: int) -> None:
    tz = ZoneInfo(key)
    lo, hi = _ms(first), _ms(last)
    probes = Probes()
    got = slices(tz, lo, hi, probes)
    # every hour, and the exact ms of each change from the slices: the same offsets
    changes = [start for start, _, _ in got[1:]]
    hourly = [offset_ms(tz, ts) for ts in range(lo, hi, HOUR)]
    assert len(changes) == sum(a != b for a, b in itertools.pairwise(hourly))
    for start, end, offset in got:
        assert offset_ms(tz, start) == offset == offset_ms(tz, end - 1)
        assert start == lo or offset_ms(tz, start - 1) != offset
    assert Probes().left - probes.left < (hi - lo) // aggregate.STEP + 40 * len(got)


def test_zones_that_never_change_need_no_probes() -> None:
    for key, offset in (("UTC", 0), ("Etc/UTC", 0), ("GMT", 0), ("Etc/GMT-14", 14 * HOUR)):
        assert fixed_offset(ZoneInfo(key)) == offset
        assert slices(ZoneInfo(key), 0, MAX_TS + 1, Probes(0)) == [(0, MAX_TS + 1, offset)]
    assert fixed_offset(ZoneInfo("Asia/Tokyo")) is None  # fixed since 1951, not before


def test_a_read_past_its_probes_is_refused() -> None:
    with pytest.raises(InvalidInput, match="narrow min_ts/max_ts"):
        slices(ZoneInfo("Europe/Madrid"), 0, MAX_TS + 1, Probes())
    # the last ms of year 9999 is probed without leaving datetime's range, east of UTC too
    assert offset_ms(ZoneInfo("Pacific/Kiritimati"), MAX_TS) == 14 * HOUR
