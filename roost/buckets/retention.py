"""Bucket retention: points older than a bucket's ``retention`` are deleted, by a job the app
starts and stops with itself (:class:`Retention`, run every ``bucket_retention_interval``).

A bucket with ``{"period": n, "unit": u}`` keeps the points of the last n units before now: hours,
days and weeks are fixed lengths; months and years are calendar arithmetic in UTC (the same day of
the month n months back, or its last day when that month is shorter: 31 March minus one month is
28 or 29 February). Each pass deletes in batches of ``batch`` points, oldest first, one short
statement each, so that a large backlog never holds the store's one writer for long: writes and
reads queued meanwhile run between the batches.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from roost.store.base import Store

log = logging.getLogger(__name__)

BATCH = 2000  # points deleted per statement
HOUR_MS = 3_600_000
FIXED_MS = {"hours": HOUR_MS, "days": 24 * HOUR_MS, "weeks": 7 * 24 * HOUR_MS}
MONTHS = {"months": 1, "years": 12}


def cutoff(now_ms: int, retention: dict[str, Any]) -> int:
    """The first ts kept at ``now_ms`` by ``retention`` ({"period": n, "unit": ...})."""
    period, unit = int(retention["period"]), retention["unit"]
    if unit in FIXED_MS:
        return now_ms - period * FIXED_MS[unit]
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    index = now.year * 12 + now.month - 1 - period * MONTHS[unit]
    year, month = divmod(index, 12)
    if year < 1:
        return 0
    day = min(now.day, calendar.monthrange(year, month + 1)[1])
    back = now.replace(year=year, month=month + 1, day=day)
    return max(0, round(back.timestamp() * 1000))


class Retention:
    """Deletes expired points every ``interval`` seconds from :meth:`run`, first at once."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float],
        interval: float,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._batch = batch
        self._waiting: list[asyncio.Future[int]] = []  # callers of next_pass

    async def run(self) -> None:
        while True:
            waiting, self._waiting = self._waiting, []  # told when this pass ends
            try:
                deleted = await self.sweep()
            except Exception as exc:  # the store failed: try again next time
                log.exception("bucket retention failed")
                _settle(waiting, exc)
            else:
                if deleted:
                    log.info("bucket retention deleted %d expired points", deleted)
                _settle(waiting, deleted)
            await asyncio.sleep(self._interval)

    async def sweep(self) -> int:
        """One pass over every bucket with a retention; how many points it deleted."""
        deleted = 0
        for bucket in await self._store.list_retained_buckets():
            if bucket.retention is None:
                continue
            before = cutoff(round(self._clock() * 1000), bucket.retention)
            while True:
                count = await self._store.expire_points(
                    bucket.owner, bucket.bucket, before, self._batch
                )
                deleted += count
                if count < self._batch:
                    break
        return deleted

    async def next_pass(self) -> int:
        """Waits for the end of the next pass of :meth:`run` to start; how many points it
        deleted (or what it raised)."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        return await waiter


def _settle(waiting: list[asyncio.Future[int]], outcome: int | Exception) -> None:
    for waiter in waiting:
        if waiter.done():
            continue
        if isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
