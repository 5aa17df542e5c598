"""Writers that keep writing points and remember which were acknowledged, and the points read
back through the REST API: for the tests that no acknowledged write is lost while a part of the
system (PostgreSQL, NATS) is briefly away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from roost.device.client import Device
from roost.errors import DeviceTimeout

from conftest import bearer

ANSWER_S = 25.0  # a write not answered within this is a hang (the store gives up after 5 s)


@dataclass
class Tally:
    """What the writers were told: the values acknowledged, and how many writes failed."""

    acked: set[str] = field(default_factory=set)
    # the writers whose writes failed, with when (loop time) each failed write was sent
    failed: list[tuple[str, float]] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)


async def write_until(
    stop: asyncio.Event, tally: Tally, name: str, write: Callable[[str], Awaitable[bool]]
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        value = f"{name}-{n}"
        sent = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(ANSWER_S):
                acked = await write(value)
        except TimeoutError:
            tally.hung.append(value)
            return
        except (DeviceTimeout, httpx.TransportError):
            acked = False
        if acked:
            tally.acked.add(value)
        else:
            tally.failed.append((name, sent))
            await asyncio.sleep(0.01)  # refused at once: do not spin


async def stored_values(http: httpx.AsyncClient, token: str, bucket: str) -> list[Any]:
    """Every point's value in ``bucket`` (``/v1/users/{user}/buckets/{bucket}``, the path after
    the host), oldest first, read a page of 1,000 at a time."""
    values: list[Any] = []
    min_ts = 0
    while True:
        params: dict[str, str | int] = {"sort": "asc", "items": 1000, "min_ts": min_ts}
        response = await http.get(f"{bucket}/data", params=params, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        values += [point["val"] for point in page]
        if len(page) < 1000:
            return values
        min_ts = page[-1]["ts"] + 1


def acked_by_all(tally: Tally, writers: int) -> Callable[[], Awaitable[bool]]:
    """A condition: each of the ``writers`` has had a write acknowledged since now."""
    before = set(tally.acked)

    async def condition() -> bool:
        return len({value.rsplit("-", 1)[0] for value in tally.acked - before}) == writers

    return condition


def failed_for_all(tally: Tally, writers: int) -> Callable[[], Awaitable[bool]]:
    """A condition: each of the ``writers`` has had a write sent from now on fail (sent while
    the part was away, not one cut off on its way)."""
    since = asyncio.get_running_loop().time()

    async def condition() -> bool:
        return len({name for name, sent in tally.failed if sent >= since}) == writers

    return condition


async def stop_writing(
    stop: asyncio.Event, writers: Sequence[asyncio.Task[None]], devices: Sequence[Device]
) -> None:
    """The end of a test, whatever was found: the writers stopped, the devices gone."""
    stop.set()
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    for device in devices:
        with contextlib.suppress(Exception):
            await device.stop()
