"""Aggregated bucket reads over real HTTP (thinger-api.md 2.10: agg, agg_type, tz), as the
Node-RED and n8n nodes ask for them; the expected values are computed here from the points."""

from __future__ import annotations

import asyncio
import statistics
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from roost.store import aggregate
from roost.store.aggregate import MAX_TS

from conftest import ADMIN, bearer

BUCKETS = f"/v1/users/{ADMIN}/buckets"
HOUR = 3_600_000
MADRID = ZoneInfo("Europe/Madrid")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")
T0 = round(datetime(2026, 3, 28, 0, 0, tzinfo=MADRID).timestamp() * 1000)


async def _fill(http: httpx.AsyncClient, token: str, points: list[dict[str, Any]]) -> None:
    body = {"bucket": "agg", "name": "agg", "enabled": True, "config": {"source": "api"}}
    assert (await http.post(BUCKETS, json=body, headers=bearer(token))).status_code == 200
    for start in range(0, len(points), 5000):
        batch = points[start : start + 5000]
        response = await http.post(f"{BUCKETS}/agg/data", json=batch, headers=bearer(token))
        assert response.status_code == 200, response.text


async def test_hourly_means_in_both_shapes(http: httpx.AsyncClient, admin_token: str) -> None:
    # every 5 minutes for 3 hours; "note" is text and "ok" a bool: neither is aggregated
    points = [
        {"ts": T0 + i * 300_000, "t": i, "h": 100 - i, "note": "n", "ok": True} for i in range(36)
    ]
    await _fill(http, admin_token, points)
    auth = bearer(admin_token)
    params = {"agg": "1h", "agg_type": "mean", "sort": "asc"}
    v2 = await http.get(f"/v2/users/{ADMIN}/buckets/agg/data", params=params, headers=auth)
    assert v2.status_code == 200, v2.text
    want = [
        {
            "ts": T0 + h * HOUR,
            "t": statistics.fmean(range(12 * h, 12 * h + 12)),
            "h": statistics.fmean(100 - i for i in range(12 * h, 12 * h + 12)),
        }
        for h in range(3)
    ]
    assert v2.json() == want
    # v1 puts the values under the aggregation's name where a plain read has "val"
    v1 = await http.get(f"{BUCKETS}/agg/data", params={**params, "agg_type": "max"}, headers=auth)
    assert v1.json() == [
        {"ts": T0 + h * HOUR, "max": {"h": 100 - 12 * h, "t": 12 * h + 11}} for h in range(3)
    ]
    # the Node-RED node's "5m", latest first, the newest two
    latest = await http.get(
        f"{BUCKETS}/agg/data", params={"agg": "5m", "agg_type": "count", "items": 2}, headers=auth
    )
    assert latest.json() == [
        {"ts": T0 + 35 * 300_000, "count": {"h": 1, "t": 1}},
        {"ts": T0 + 34 * 300_000, "count": {"h": 1, "t": 1}},
    ]


async def test_days_follow_the_time_zone_given(http: httpx.AsyncClient, admin_token: str) -> None:
    # 28 to 30 March 2026 in Madrid, one point an hour; the 29th has 23 hours
    points = [{"ts": T0 + h * HOUR, "v": 1} for h in range(24 + 23 + 24)]
    await _fill(http, admin_token, points)
    auth = bearer(admin_token)
    params = {"agg": "1d", "agg_type": "sum", "tz": "Europe/Madrid", "sort": "asc"}
    got = await http.get(f"/v2/users/{ADMIN}/buckets/agg/data", params=params, headers=auth)
    days = [datetime(2026, 3, d, tzinfo=MADRID).timestamp() * 1000 for d in (28, 29, 30)]
    assert got.json() == [
        {"ts": round(days[0]), "v": 24},
        {"ts": round(days[1]), "v": 23},
        {"ts": round(days[2]), "v": 24},
    ]
    utc = await http.get(
        f"/v2/users/{ADMIN}/buckets/agg/data", params={**params, "tz": "UTC"}, headers=auth
    )
    # the first point, midnight in Madrid, is 23:00 UTC the day before
    assert [row["v"] for row in utc.json()] == [1, 24, 24, 22]


async def test_bad_aggregations_are_refused_clearly(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    await _fill(http, admin_token, [{"ts": T0, "v": 1}])
    auth = bearer(admin_token)
    for params, words in (
        ({"agg": "2h"}, "agg must be one of"),
        ({"agg": "1h", "agg_type": "average"}, "agg_type must be one of"),
        ({"agg": "1h", "agg_type": "median"}, "not supported"),
        ({"agg": "1h", "tz": "Mars/Olympus"}, "time zone"),
        ({"agg": "1h", "tz": "../../etc/passwd"}, "IANA"),
        ({"agg": "1h", "transform": "abs"}, "transform"),
        ({"tag_label": "p1"}, "tag filters"),  # as the Node-RED node sends them: never ignored
    ):
        response = await http.get(f"{BUCKETS}/agg/data", params=params, headers=auth)
        assert response.status_code == 400, params
        assert words in response.json()["error"]["message"], response.text
    # an empty agg is a plain read, whatever agg_type says (the n8n node sends both)
    plain = await http.get(
        f"{BUCKETS}/agg/data", params={"agg": "", "agg_type": "mean"}, headers=auth
    )
    assert plain.json() == [{"ts": T0, "val": {"v": 1}}]


async def test_aggregated_rows_page_as_the_clients_page_points(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    """3,200 points, one a minute, in 5-minute counts, 100 rows a call: moving max_ts (desc) to
    the last row's ts - 1, as the Node-RED and n8n nodes do, or min_ts (asc) past its bucket, every
    bucket comes once and the counts add up to every point."""
    await _fill(http, admin_token, [{"ts": T0 + m * 60_000, "v": m} for m in range(3200)])
    url = f"/v2/users/{ADMIN}/buckets/agg/data"
    for sort in ("desc", "asc"):
        params: dict[str, Any] = {"agg": "5min", "agg_type": "count", "items": 100, "sort": sort}
        rows: list[dict[str, Any]] = []
        while True:
            page = (await http.get(url, params=params, headers=bearer(admin_token))).json()
            rows += page
            if len(page) < 100:
                break
            if sort == "desc":
                params["max_ts"] = page[-1]["ts"] - 1
            else:
                params["min_ts"] = page[-1]["ts"] + 300_000  # past its 5-minute bucket
        starts = [T0 + b * 300_000 for b in range(640)]
        assert [row["ts"] for row in rows] == (starts[::-1] if sort == "desc" else starts)
        assert all(row["v"] == 5 for row in rows)


async def test_points_at_the_end_of_time_aggregate_in_any_zone(
    http: httpx.AsyncClient, admin_token: str
) -> None:
    """The last ms of year 9999 is a ts a point may have; east of UTC it is local year 10000,
    which no datetime holds: the rows still come (200), with their buckets' starts."""
    await _fill(http, admin_token, [{"ts": MAX_TS, "v": 1}, {"ts": 252_000_000_000_000, "v": 2}])
    url = f"/v2/users/{ADMIN}/buckets/agg/data"
    auth = bearer(admin_token)
    tokyo = await http.get(url, params={"agg": "1h", "tz": "Asia/Tokyo"}, headers=auth)
    assert tokyo.status_code == 200, tokyo.text
    # Tokyo is 9 hours ahead, whole hours: its hours are UTC's
    assert tokyo.json() == [
        {"ts": MAX_TS + 1 - HOUR, "v": 1},
        {"ts": 252_000_000_000_000 - 252_000_000_000_000 % HOUR, "v": 2},
    ]
    madrid = await http.get(
        url, params={"agg": "1y", "tz": "Europe/Madrid", "sort": "asc"}, headers=auth
    )
    assert madrid.status_code == 200, madrid.text
    # 9955 and (local) 10000 began at midnight in Madrid, an hour before UTC's
    year_9955 = round(datetime(9955, 1, 1, tzinfo=MADRID).timestamp() * 1000)
    assert madrid.json() == [{"ts": year_9955, "v": 2}, {"ts": MAX_TS + 1 - HOUR, "v": 1}]
    kiritimati = await http.get(
        url, params={"agg": "1mo", "tz": "Pacific/Kiritimati"}, headers=auth
    )
    assert kiritimati.status_code == 200, kiritimati.text
    month = datetime.fromtimestamp(252_000_000_000, KIRITIMATI).replace(
        day=1, hour=0, minute=0, second=0
    )
    assert kiritimati.json() == [
        {"ts": MAX_TS + 1 - 14 * HOUR, "v": 1},
        {"ts": round(month.timestamp() * 1000), "v": 2},
    ]


async def test_points_centuries_apart_cost_a_bounded_number_of_zone_lookups(
    http: httpx.AsyncClient, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """52 points 300 years apart, yearly in Madrid, the latest first: the walk asks the zone for
    its offset only near the points (it used to probe every day of each ~986-year window, seconds
    on the event loop); a read that would need more than MAX_PROBES is refused, not run."""
    gap = 300 * 365 * 24 * HOUR
    await _fill(http, admin_token, [{"ts": i * gap, "v": i} for i in range(27)])
    lookups = 0
    offset_ms = aggregate.offset_ms

    def counted(*args: Any) -> int:
        nonlocal lookups
        lookups += 1
        return offset_ms(*args)

    monkeypatch.setattr(aggregate, "offset_ms", counted)
    url = f"/v2/users/{ADMIN}/buckets/agg/data"
    auth = bearer(admin_token)
    params = {"agg": "1y", "tz": "Europe/Madrid", "sort": "desc", "max_ts": 250_000_000_000_000}
    # six at once, and a plain read among them: all answer, each with a few lookups a point
    *answers, plain = await asyncio.gather(
        *(http.get(url, params=params, headers=auth) for _ in range(6)),
        http.get(url, params={"items": 1}, headers=auth),
    )
    for got in answers:
        assert got.status_code == 200, got.text
        assert [row["v"] for row in got.json()] == list(range(26, -1, -1))
    assert plain.json() == [{"ts": 26 * gap, "v": 26}]
    assert lookups < 6 * 27 * 100  # not one a day (about 3 million a read)
    # a dense bucket over centuries in a zone that changes its offset: refused, clearly
    await http.delete(f"{BUCKETS}/agg/data", headers=auth)
    dense = [{"ts": y * 365 * 24 * HOUR, "v": y} for y in range(600)]
    assert (await http.post(f"{BUCKETS}/agg/data", json=dense, headers=auth)).status_code == 200
    lookups = 0
    refused = await http.get(url, params={"agg": "1y", "tz": "Europe/Madrid"}, headers=auth)
    assert refused.status_code == 400, refused.text
    assert "narrow min_ts/max_ts" in refused.json()["error"]["message"]
    assert lookups <= aggregate.MAX_PROBES + 1000  # and one per group, for its bucket
    # other requests answer meanwhile, and a zone that never changes needs no lookups at all
    lookups = 0
    for tz in ("Etc/UTC", "Etc/GMT-14", "UTC"):
        rows = await http.get(url, params={"agg": "1y", "tz": tz, "items": 5}, headers=auth)
        assert rows.status_code == 200, rows.text
        assert len(rows.json()) == 5
    assert lookups == 0
