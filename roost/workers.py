"""``roost serve`` itself, and ``roost serve --workers N``: a supervisor and N worker processes.

One node serves with :func:`serve`. With ``workers`` > 1 the command's process becomes a
supervisor (:class:`Supervisor`) that spawns N workers, each a whole node: every worker binds
every port with SO_REUSEPORT (the kernel spreads the connections over them), and all reach one
another's devices over the NATS bus of ``nats_url`` and share the database (PostgreSQL with
``database_url``, or the data dir's SQLite in WAL mode). There is no embedded bus: without
``nats_url`` the command refuses with one line saying so, as it does for a port of 0 (each worker
would get a port of its own).

The first worker starts alone (it creates the keys, migrates the database, makes the first
admin), then the others together. The supervisor forwards SIGTERM and SIGINT to the workers as
SIGTERM (each drains: see ``Roost.stop``), starts again a worker that ended while it was not told
to (at once, then with a doubling delay while it keeps dying young), and exits once every worker
has ended. A second signal kills the workers outright. Each worker is in a process group of its
own, so a Ctrl-C on the terminal reaches the supervisor only, and ends by itself if the
supervisor dies (its end of the pipe to it closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from roost.app import Roost
from roost.config import Settings
from roost.errors import ConfigError, RoostError

log = logging.getLogger("roost.workers")

READY_TIMEOUT_S = 120.0  # a worker that has not opened its ports by then is stopped
RESTART_FIRST_S = 0.5  # delay before starting again a worker that ended unasked
RESTART_MAX_S = 30.0  # the doubling delay's cap, while it keeps ending young
STABLE_S = 30.0  # a worker that served this long starts again after the first delay
KILL_AFTER_S = 30.0  # past drain_timeout twice: a stopping worker still there is killed


def run_loop(main: Any) -> None:
    """Run a coroutine on uvloop (asyncio's loop where uvloop is missing)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
    else:
        uvloop.run(main)


async def serve(
    settings: Settings,
    *,
    reuse_port: bool = False,
    started: Callable[[], None] | None = None,
    lifeline: Connection | None = None,
) -> None:
    """Serve one node until SIGINT or SIGTERM (or until ``lifeline``, a pipe to the supervisor,
    closes), then drain it."""
    # Long-lived objects made at start-up stay out of the cyclic collector, and it runs less
    # often: a resource call allocates many short-lived containers, none of them cyclic.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if lifeline is not None:  # readable only once the supervisor's end is closed: it is gone

        def orphaned() -> None:
            loop.remove_reader(lifeline.fileno())  # EOF stays readable: hear it once
            log.warning("the supervisor is gone: stopping")
            stop.set()

        loop.add_reader(lifeline.fileno(), orphaned)
    try:
        await Roost(settings, reuse_port=reuse_port).run_until(stop, started)
    finally:
        if lifeline is not None:
            loop.remove_reader(lifeline.fileno())


def check_workers(settings: Settings) -> None:
    """Refuse, with one line, what several workers cannot do."""
    count = settings.workers
    if not settings.nats_url:
        raise ConfigError(
            f"setting 'workers' {count}: the workers reach one another's devices over NATS, and "
            "there is no embedded one: run a nats-server and set nats_url "
            "(ROOST_NATS_URL=nats://127.0.0.1:4222; see docs/deploy.md)"
        )
    ports = ["http_port", "device_port", "iotmp_port"]
    if settings.tls_cert is not None or settings.tls_self_signed:
        ports += ["https_port", "device_tls_port", "iotmp_tls_port"]
    for name in ports:
        if getattr(settings, name) == 0:
            raise ConfigError(
                f"setting 'workers' {count}: {name} 0 would give each worker a port of its own; "
                "give a port number the workers share"
            )


def _worker_main(settings: Settings, index: int, link: Connection) -> None:
    """A worker process: one node on the shared ports, until told to stop."""
    os.setpgrp()  # a terminal's Ctrl-C reaches the supervisor, which tells each worker once
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s",
    )

    def started() -> None:
        link.send("ready")

    try:
        run_loop(serve(settings, reuse_port=True, started=started, lifeline=link))
    except RoostError as exc:  # as the command says it: one line, no traceback
        _worker_failed(index, exc.message)
    except sqlite3.Error as exc:
        _worker_failed(index, f"the database in {str(settings.data_dir)!r} cannot be used: {exc}")
    except OSError as exc:
        where = f"{exc.filename!r}: " if exc.filename else ""
        _worker_failed(index, f"{where}{exc.strerror or exc}")


def _worker_failed(index: int, message: str) -> None:
    print(f"roost: worker {index}: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


@dataclass
class Worker:
    index: int
    process: BaseProcess
    link: Connection  # the supervisor's end of the pipe: "ready", and EOF when either is gone
    began: float  # loop time of its start
    ended: asyncio.Future[None] = field(init=False)


class Supervisor:
    """Runs ``settings.workers`` workers until a signal, then waits for all of them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: dict[int, Worker] = {}
        self.stopping = asyncio.Event()
        self._signals = 0
        self._spawn = multiprocessing.get_context("spawn")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._signalled, signum)
        try:
            # the first alone: it makes the keys, the database's tables and the first admin
            if await self._start(0):
                started = await asyncio.gather(
                    *(self._start(i) for i in range(1, self.settings.workers))
                )
                if all(started):
                    log.info("serving with %d workers", self.settings.workers)
                    await asyncio.gather(*(self._keep(i) for i in range(self.settings.workers)))
                    await self._all_ended()
                    return
            failed = not self.stopping.is_set()
            self._stop_all()
            await self._all_ended()
            if failed:
                raise ConfigError("a worker could not start (its error is above)")
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _signalled(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
            self._stop_all()
        else:
            log.warning("%s again: killing the workers", signal.Signals(signum).name)
            self._stop_all(signal.SIGKILL)

    def _stop_all(self, signum: int = signal.SIGTERM) -> None:
        self.stopping.set()
        for worker in self.workers.values():
            if worker.process.pid is not None and worker.process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signum)

    async def _start(self, index: int) -> bool:
        """Start worker ``index`` and wait until it serves (False: it ended or was stopped)."""
        loop = asyncio.get_running_loop()
        mine, theirs = self._spawn.Pipe()
        process = self._spawn.Process(
            target=_worker_main,
            args=(self.settings, index, theirs),
            name=f"roost-worker-{index}",
        )
        process.start()
        theirs.close()  # the worker holds its end: when it is gone, ours reads EOF
        worker = Worker(index, process, mine, loop.time())
        worker.ended = asyncio.ensure_future(_readable(process.sentinel))
        self.workers[index] = worker
        if self.stopping.is_set():  # a signal came while it was being spawned
            self._stop_all()
        ready = asyncio.ensure_future(_readable(mine.fileno()))
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait(
                [ready, worker.ended, stopping],
                timeout=READY_TIMEOUT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            stopping.cancel()
        if worker.ended.done() or self.stopping.is_set() or not _said_ready(mine):
            return False
        log.info("worker %d serving (pid %d)", index, process.pid)
        return True

    async def _keep(self, index: int) -> None:
        """Until the supervisor stops: start worker ``index`` again whenever it ends."""
        young = 0  # how many times in a row it ended before STABLE_S
        stopping = asyncio.ensure_future(self.stopping.wait())
        try:
            while True:
                worker = self.workers[index]
                waiting: list[asyncio.Future[Any]] = [worker.ended, stopping]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping.is_set():
                    return  # the caller waits for them all
                self._reap(worker)
                lived = asyncio.get_running_loop().time() - worker.began
                young = young + 1 if lived < STABLE_S else 0
                delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** max(0, young - 1))
                log.warning(
                    "worker %d (pid %s) ended (exit code %s); starting it again in %g s",
                    index,
                    worker.process.pid,
                    worker.process.exitcode,
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), delay)
                if self.stopping.is_set():
                    return
                await self._start(index)
        finally:
            stopping.cancel()

    def _reap(self, worker: Worker) -> None:
        worker.process.join(1)
        worker.link.close()

    async def _all_ended(self) -> None:
        """Wait for every worker to end (killed past twice drain_timeout and KILL_AFTER_S)."""
        waiting = [w.ended for w in self.workers.values()]
        limit = 2 * self.settings.drain_timeout + KILL_AFTER_S
        _, late = await asyncio.wait(waiting, timeout=limit)
        if late:
            self._stop_all(signal.SIGKILL)
            await asyncio.wait(waiting)
        for worker in self.workers.values():
            self._reap(worker)


def _said_ready(link: Connection) -> bool:
    try:
        return bool(link.poll() and link.recv() == "ready")
    except (EOFError, OSError):
        return False


async def _readable(fd: int) -> None:
    """Until ``fd`` is readable (data, or EOF: a process's sentinel once it has ended)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def supervise(settings: Settings) -> None:
    """``roost serve --workers N``: refuse what cannot work, else run the workers until stopped."""
    check_workers(settings)
    asyncio.run(Supervisor(settings).run())
