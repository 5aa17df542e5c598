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
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
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
        if len(outcomes) != len(queued):
            outcomes = [RuntimeError("a group commit lost track of its jobs")] * len(queued)
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
