"""Group commit: writes that come while the store's writer is busy go to it together.

Point writes come from many devices at once, each waiting for its own confirmation. Committed one
by one, each pays a transaction and a thread hop of its own; here, each caller queues its write
and awaits a future, and the writer thread takes every write queued when it gets to them and runs
them as ONE job (the store runs them in one transaction, :func:`roost.store.sqlite_buckets.
write_points`), then answers every caller with one wake-up of the event loop. No caller is
answered before the commit that holds its write. Nothing waits to fill a group: a write that
finds the writer idle goes at once, alone; the writes that come while it works form the next
group. The writer's other work keeps its order: a group is due on the executor from the first
write queued into it, so work submitted after a write runs after it.

The same rule for a store whose writes are coroutines on one event loop (PostgreSQL through
asyncpg): :class:`AsyncGroupCommit` runs one group at a time as a task of its own; the writes
queued while a group is in flight (its transaction, its commit) form the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from typing import Generic, TypeVar

J = TypeVar("J")

log = logging.getLogger(__name__)


class GroupCommit(Generic[J]):
    """Queues jobs from event loops for ``run``, which gets them in groups on the writer
    thread and returns, for each job in order, None (done) or the exception its caller gets;
    an exception ``run`` raises goes to every caller of the group."""

    __slots__ = ("_due", "_lock", "_queued", "_run")

    def __init__(self, run: Callable[[Sequence[J]], Sequence[BaseException | None]]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._queued: list[tuple[J, asyncio.Future[None]]] = []
        self._due = False  # a group is on the executor and has not been taken yet

    async def submit(self, executor: Executor, job: J) -> None:
        """Returns once the group holding ``job`` has run, or raises what ``job`` failed with. A
        caller cancelled meanwhile is not answered; its job may still have run."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            self._queued.append((job, future))
            start, self._due = not self._due, True
        if start:
            try:
                executor.submit(self._take)
            except RuntimeError:  # the executor is shut down: nobody will take the group
                with self._lock:
                    queued, self._queued, self._due = self._queued, [], False
                _settle(queued, [RuntimeError("store is not open")] * len(queued))
        await future

    def _take(self) -> None:
        """On the writer thread: run the group queued so far, then answer its callers."""
        with self._lock:
            queued, self._queued, self._due = self._queued, [], False
        try:
            outcomes: Sequence[BaseException | None] = self._run([job for job, _ in queued])
        except BaseException as exc:  # the whole group failed (disk full, database gone)
            outcomes = [exc] * len(queued)
        outcomes = _checked(outcomes, len(queued))
        by_loop: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for index, (_, future) in enumerate(queued):
            by_loop.setdefault(future.get_loop(), []).append(index)
        for loop, indexes in by_loop.items():
            jobs = [queued[i] for i in indexes]
            results = [outcomes[i] for i in indexes]
            try:
                loop.call_soon_threadsafe(_settle, jobs, results)
            except RuntimeError:  # that loop is closed: its callers are gone
                log.warning("a group of %d writes ran for an event loop now closed", len(jobs))


class AsyncGroupCommit(Generic[J]):
    """Queues jobs for ``run``, a coroutine on this event loop that gets them in groups, one
    group at a time, and returns for each job in order None (done) or the exception its caller
    gets; an exception ``run`` raises goes to every caller of the group."""

    __slots__ = ("_queued", "_run", "_writer")

    def __init__(
        self, run: Callable[[Sequence[J]], Awaitable[Sequence[BaseException | None]]]
    ) -> None:
        self._run = run
        self._queued: list[tuple[J, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None  # runs groups while there are some

    def queue(self, job: J) -> asyncio.Future[None]:
        """Queues ``job`` at once (the caller's order is the order jobs run in); the future is
        done once the group holding it has run."""
        future = asyncio.get_running_loop().create_future()
        self._queued.append((job, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="roost-group-commit")
        return future

    async def wait_idle(self) -> None:
        """Returns once every job queued so far has run (before the store closes)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                try:
                    outcomes = await self._run([job for job, _ in queued])
                except Exception as exc:  # the whole group failed (database gone)
                    outcomes = [exc] * len(queued)
                except BaseException:  # cancelled: nobody else will answer these callers
                    _settle(queued, [RuntimeError("the store's writer stopped")] * len(queued))
                    raise
                _settle(queued, _checked(outcomes, len(queued)))
        finally:
            self._writer = None
            queued, self._queued = self._queued, []
            _settle(queued, [RuntimeError("the store's writer stopped")] * len(queued))


def _checked(outcomes: Sequence[BaseException | None], jobs: int) -> Sequence[BaseException | None]:
    if len(outcomes) != jobs:
        return [RuntimeError("a group commit lost track of its jobs")] * jobs
    return outcomes


def _settle(
    queued: Sequence[tuple[object, asyncio.Future[None]]],
    outcomes: Sequence[BaseException | None],
) -> None:
    """On the callers' loop: answer each caller still waiting (a cancelled one is not)."""
    for (_, future), outcome in zip(queued, outcomes, strict=True):
        if future.done():
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
