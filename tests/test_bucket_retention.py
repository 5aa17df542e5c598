"""Bucket retention over a real server: the app's job deletes the points older than a bucket's
retention and keeps the rest; and the cut-off arithmetic, months and years on the calendar."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from roost.app import Roost
from roost.buckets.retention import Retention, cutoff
from roost.store.base import Bucket

from conftest import ADMIN, bearer, login, make_settings

BUCKETS = f"/v1/users/{ADMIN}/buckets"
HOUR = 3_600_000


@pytest.fixture
async def retaining(tmp_path: Path) -> AsyncIterator[Roost]:
    roost = Roost(make_settings(tmp_path / "data", bucket_retention_interval=0.05))
    await roost.start()
    try:
        yield roost
    finally:
        await roost.stop()


async def test_the_app_deletes_points_past_their_buckets_retention(retaining: Roost) -> None:
    assert retaining.retention is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{retaining.http_port}") as http:
        auth = bearer(await login(http))
        now = round(time.time() * 1000)
        for bucket, retention in (("short", {"period": 2, "unit": "hours"}), ("all", None)):
            body = {"bucket": bucket, "name": bucket, "enabled": True, "retention": retention}
            assert (await http.post(BUCKETS, json=body, headers=auth)).status_code == 200
            # one point every 10 minutes over the last 5 hours but none 2 hours old, oldest first
            points = [{"ts": now - m * 60_000, "m": m} for m in range(300, -1, -10) if m != 120]
            response = await http.post(f"{BUCKETS}/{bucket}/data", json=points, headers=auth)
            assert response.status_code == 200
        # a pass that starts after the writes (one may have run meanwhile, and deleted them)
        assert await retaining.retention.next_pass() in (0, 18)  # 130 to 300 minutes old
        left = (await http.get(f"{BUCKETS}/short/data", headers=auth)).json()
        assert [p["val"]["m"] for p in left] == list(range(0, 120, 10))  # the latest first
        assert len((await http.get(f"{BUCKETS}/all/data", headers=auth)).json()) == 30
        assert await retaining.retention.next_pass() == 0


async def test_a_pass_deletes_in_bounded_batches_on_the_clock_it_is_given(server: Roost) -> None:
    # the app's own job passed at start-up and waits 600 s: this one runs on its own clock
    assert server.services is not None
    store = server.services.store
    await store.create_bucket(
        Bucket(ADMIN, "b", "b", "", True, {"source": "api"}, {"period": 1, "unit": "days"}, 0, 0)
    )
    day = 24 * HOUR
    await store.write_points(ADMIN, "b", [(ts, {"v": 1}) for ts in range(0, 3 * day, 60_000)])
    calls: list[int] = []
    expire = store.expire_points

    async def counted(owner: str, bucket: str, before: int, limit: int) -> int:
        calls.append(limit)
        return await expire(owner, bucket, before, limit)

    store.expire_points = counted  # type: ignore[method-assign]
    job = Retention(store, lambda: 3 * day / 1000, interval=60, batch=500)
    assert await job.sweep() == 2 * day // 60_000  # the two days before the last one
    assert len(calls) == 2 * day // 60_000 // 500 + 1 and set(calls) == {500}
    left = await store.read_points(ADMIN, "b", None, None, 1)
    assert [p.ts for p in left] == [2 * day]


@pytest.mark.parametrize(
    ("now", "retention", "kept_from"),
    [
        (
            datetime(2026, 3, 31, 12, tzinfo=UTC),
            {"period": 1, "unit": "months"},
            datetime(2026, 2, 28, 12, tzinfo=UTC),
        ),
        (
            datetime(2024, 3, 31, 12, tzinfo=UTC),
            {"period": 1, "unit": "months"},
            datetime(2024, 2, 29, 12, tzinfo=UTC),
        ),
        (
            datetime(2026, 1, 15, tzinfo=UTC),
            {"period": 3, "unit": "months"},
            datetime(2025, 10, 15, tzinfo=UTC),
        ),
        (
            datetime(2028, 2, 29, tzinfo=UTC),
            {"period": 1, "unit": "years"},
            datetime(2027, 2, 28, tzinfo=UTC),
        ),
        (
            datetime(2026, 5, 4, 10, tzinfo=UTC),
            {"period": 2, "unit": "weeks"},
            datetime(2026, 4, 20, 10, tzinfo=UTC),
        ),
        (
            datetime(2026, 5, 4, 10, tzinfo=UTC),
            {"period": 36, "unit": "hours"},
            datetime(2026, 5, 2, 22, tzinfo=UTC),
        ),
    ],
)
def test_the_cut_off_counts_months_and_years_on_the_calendar(
    now: datetime, retention: dict[str, object], kept_from: datetime
) -> None:
    assert cutoff(round(now.timestamp() * 1000), retention) == kept_from.timestamp() * 1000
