"""Checkpoints of the SQLite WAL off the writer's path.

In WAL mode a commit appends pages to the ``-wal`` file; a checkpoint copies them back into the
database file and syncs it (``synchronous = NORMAL`` syncs at checkpoints only). SQLite runs
one on the committing connection once the WAL holds ``wal_autocheckpoint`` pages: the writer
thread then waits for the copy and the sync, and so does every write queued behind it. With
many buckets written at once, each commit dirties a page per bucket and reaches that mark at
every commit (issue 11's ingest benchmark: 5,000 points/s, the writer waiting on the disk).

Here a thread of its own, on a connection of its own, runs PASSIVE checkpoints (they never block
the writer) at most every ``interval`` seconds while writes come (:meth:`Checkpointer.nudge`);
the writer's own auto-checkpoint stays as the backstop, at ``BACKSTOP_PAGES``: under writes
that never pause the WAL restarts only after a checkpoint the writer itself made, so it still
makes one, now and then, with little left to copy. Durability is unchanged: a commit is in the
WAL when it returns, checkpointed or not.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

BACKSTOP_PAGES = 10_000  # the writer's own auto-checkpoint (4 KiB pages: 40 MiB of WAL)


class Checkpointer:
    __slots__ = ("_connect", "_due", "_interval", "_stopping", "_thread")

    def __init__(self, connect: Callable[[], sqlite3.Connection], interval: float = 0.25) -> None:
        self._connect = connect
        self._interval = interval
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="roost-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def nudge(self) -> None:
        """Pages were committed: a checkpoint is due (from any thread)."""
        self._due.set()

    def stop(self) -> None:
        """Ends the thread once its checkpoint under way, if any, is done."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._due.set()
        thread.join()

    def _run(self) -> None:
        try:  # a connection is used on the thread that made it
            conn = self._connect()
        except sqlite3.Error:  # the writer's backstop checkpoints alone
            log.exception("the WAL checkpoint thread cannot connect")
            return
        try:
            while True:
                self._due.wait()
                if self._stopping.is_set():
                    return
                self._due.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # the next one retries; the writer's backstop remains
                    log.exception("a WAL checkpoint failed")
                if self._stopping.wait(self._interval):  # at most one per interval
                    return
        finally:
            conn.close()
