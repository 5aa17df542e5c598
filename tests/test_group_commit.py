"""GroupCommit (roost/store/group_commit.py): jobs queued while the writer is busy run as one
group, each caller answered with its own outcome after the group ran."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from roost.errors import NotFound
from roost.store.group_commit import AsyncGroupCommit, GroupCommit


@pytest.fixture
def writer() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


def _busy(writer: ThreadPoolExecutor) -> threading.Event:
    """Keeps the writer busy until the event returned is set."""
    release = threading.Event()
    writer.submit(release.wait, 10)
    return release


async def test_jobs_queued_while_the_writer_is_busy_run_as_one_group(
    writer: ThreadPoolExecutor,
) -> None:
    groups: list[list[int]] = []

    def run(jobs: Sequence[int]) -> list[BaseException | None]:
        groups.append(list(jobs))
        return [None] * len(jobs)

    commit = GroupCommit(run)
    release = _busy(writer)
    callers = [asyncio.ensure_future(commit.submit(writer, n)) for n in range(5)]
    done, _ = await asyncio.wait(callers, timeout=0.1)
    assert not done  # nobody is answered before the group has run
    release.set()
    await asyncio.gather(*callers)
    assert groups == [[0, 1, 2, 3, 4]]
    await commit.submit(writer, 5)  # the writer idle: a job goes at once, alone
    assert groups == [[0, 1, 2, 3, 4], [5]]


async def test_each_caller_gets_its_own_outcome(writer: ThreadPoolExecutor) -> None:
    def run(jobs: Sequence[int]) -> list[BaseException | None]:
        return [NotFound(f"job {n}") if n % 2 else None for n in jobs]

    commit = GroupCommit(run)
    release = _busy(writer)
    callers = [commit.submit(writer, n) for n in range(4)]
    gathered = asyncio.gather(*callers, return_exceptions=True)
    release.set()
    outcomes = await gathered
    assert outcomes[0] is None and outcomes[2] is None
    assert [str(outcomes[n]) for n in (1, 3)] == ["job 1", "job 3"]


async def test_a_group_that_fails_fails_every_caller_and_the_next_group_runs(
    writer: ThreadPoolExecutor,
) -> None:
    calls = 0

    def run(jobs: Sequence[int]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        return [None] * len(jobs)

    commit = GroupCommit(run)
    release = _busy(writer)
    gathered = asyncio.gather(*(commit.submit(writer, n) for n in range(3)), return_exceptions=True)
    release.set()
    outcomes = await gathered
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    await commit.submit(writer, 9)  # the writer goes on


async def test_a_cancelled_caller_is_not_answered_and_the_others_are(
    writer: ThreadPoolExecutor,
) -> None:
    ran: list[int] = []

    def run(jobs: Sequence[int]) -> list[BaseException | None]:
        ran.extend(jobs)
        return [None] * len(jobs)

    commit = GroupCommit(run)
    release = _busy(writer)
    callers = [asyncio.ensure_future(commit.submit(writer, n)) for n in range(3)]
    await asyncio.sleep(0)  # all queued
    callers[1].cancel()
    release.set()
    await asyncio.gather(callers[0], callers[2])
    assert callers[1].cancelled()
    assert ran == [0, 1, 2]  # its job had been queued: it ran with the others


async def test_a_closed_writer_answers_with_an_error(writer: ThreadPoolExecutor) -> None:
    commit = GroupCommit(lambda jobs: [None] * len(jobs))
    writer.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="not open"):
        await commit.submit(writer, 1)


async def test_async_jobs_queued_while_a_group_is_in_flight_run_as_the_next_group() -> None:
    groups: list[list[int]] = []
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def run(jobs: Sequence[int]) -> list[BaseException | None]:
        groups.append(list(jobs))
        in_flight.set()
        await release.wait()
        return [NotFound(f"job {n}") if n == 3 else None for n in jobs]

    commit = AsyncGroupCommit(run)
    first = commit.queue(0)
    await in_flight.wait()  # the writer idle: job 0 went at once, alone
    later = [commit.queue(n) for n in range(1, 5)]
    await asyncio.sleep(0)
    assert not any(caller.done() for caller in [first, *later])  # none before its group ran
    release.set()
    outcomes = await asyncio.gather(first, *later, return_exceptions=True)
    assert groups == [[0], [1, 2, 3, 4]]
    assert [str(o) if o else None for o in outcomes] == [None, None, None, "job 3", None]


async def test_an_async_group_that_fails_fails_its_callers_and_the_next_group_runs() -> None:
    calls = 0

    async def run(jobs: Sequence[int]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database gone")
        return [None] * len(jobs)

    commit = AsyncGroupCommit(run)
    outcomes = await asyncio.gather(*(commit.queue(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, OSError) for outcome in outcomes)
    await commit.queue(9)  # the writer goes on
    await commit.wait_idle()
