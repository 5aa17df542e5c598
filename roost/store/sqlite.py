"""The embedded store: one SQLite file, one writer, no database work on the event loop.

Every statement runs on ONE dedicated worker thread that owns the only connection; coroutines
hand it work through ``loop.run_in_executor``. Work is thus serialised in submission order. A
write is one statement (atomic on its own) or, where it reads before it writes, one short
``BEGIN IMMEDIATE`` transaction; another process sharing the file, such as an admin command,
waits on ``busy_timeout`` rather than failing. The statements live in ``sqlite_queries``.

Token records, read on every call made with a user access token or a device token, are kept in
a :class:`~roost.store.memo.Memo` for ``token_memo_seconds``, and bucket records, read on every
device's bucket write, for ``bucket_memo_seconds``: writes from this store forget them at once,
writes from another process sharing the file are seen within that time.

Point writes go to the worker in groups (:mod:`roost.store.group_commit`): those queued while it
is busy are committed together, in one transaction, and each caller is answered after that
commit. Durability: WAL with ``synchronous = NORMAL``: a committed write survives a crash or
``kill -9`` of the process (it is in the WAL, in the operating system's hands); a power loss or
an operating system crash may take the last commits, never the database's consistency.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from roost.errors import InvalidInput, RoostError
from roost.store import base
from roost.store import sqlite_aggregate as qa
from roost.store import sqlite_buckets as qb
from roost.store import sqlite_endpoints as qe
from roost.store import sqlite_properties as qp
from roost.store import sqlite_queries as q
from roost.store.aggregate import AggregateQuery, AggregateRow, Grouping, Partial, walk
from roost.store.base import EVERY, AccessToken, Device, DeviceToken, Page, RefreshToken, User
from roost.store.group_commit import GroupCommit
from roost.store.memo import Memo
from roost.store.migrate import apply_migrations
from roost.store.point_writes import PointWrite, point_write
from roost.store.sqlite_checkpoints import BACKSTOP_PAGES, Checkpointer

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R", AccessToken, DeviceToken)

_MEMORY = ":memory:"
DATABASE_FILE = "roost.db"  # the SQLite database in a data dir
PURGE_CHUNK = 1000  # expired refresh tokens deleted per store job
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class SQLiteStore:
    """The Store on a SQLite file (or ``":memory:"``), in WAL mode with foreign keys on."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        token_memo_seconds: float = 2.0,
        bucket_memo_seconds: float = 2.0,
        counts: base.StoreCounts | None = None,
    ) -> None:
        self._path = path if path == _MEMORY else Path(path)
        self.counts = counts if counts is not None else base.StoreCounts()  # for roost.metrics
        self._busy_timeout_ms = busy_timeout_ms
        # ("access", owner, token) or ("device", token id) -> the record
        self._tokens: Memo[tuple[str, ...], AccessToken | DeviceToken] = Memo(token_memo_seconds)
        self._buckets: Memo[tuple[str, str], base.Bucket] = Memo(bucket_memo_seconds)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only
        # point writes queued meanwhile go to the worker together, one transaction for all
        self._point_writes = GroupCommit(self._write_points)
        self._checkpoints: Checkpointer | None = None  # a file's WAL, copied back off this path

    async def open(self) -> None:
        """Creates the parent directory if needed, connects and applies pending migrations."""
        if self._executor is not None:
            raise RuntimeError("store is already open")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roost-sqlite")
        try:
            await self._submit(self._connect)
        except BaseException:
            await self.close()
            raise

    def changed_elsewhere(self) -> None:
        self._tokens.invalidate()
        self._buckets.invalidate()

    async def close(self) -> None:
        """Finishes the work already submitted, then closes the connection and the worker."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
        finally:
            executor.shutdown(wait=False)

    # users

    async def create_user(self, user: User) -> None:
        await self._run(q.insert_user, user)

    async def get_user(self, name: str) -> User | None:
        return await self._run(q.select_user, name)

    async def count_users(self) -> int:
        return await self._run(q.count_users)

    async def list_users(self, page: Page = EVERY) -> list[User]:
        return await self._run(q.select_users, page)

    async def update_user(
        self, name: str, role: str | None = None, enabled: bool | None = None
    ) -> User:
        return await self._run(q.update_user, name, role, enabled)

    async def set_password(self, name: str, password_hash: str) -> int:
        return await self._run(q.set_password, name, password_hash)

    # devices

    async def create_device(self, device: Device) -> None:
        await self._run(q.insert_device, device)

    async def get_device(self, owner: str, device: str) -> Device | None:
        return await self._run(q.select_device, owner, device)

    async def list_devices(self, owner: str, page: Page = EVERY) -> list[Device]:
        return await self._run(q.select_devices, owner, page)

    async def update_device(self, device: Device, fields: Collection[str] | None = None) -> None:
        await self._run(q.update_device, device, fields)

    async def delete_device(self, owner: str, device: str) -> bool:
        # its device tokens go with it
        return await self._tokens.writing(self._run(q.delete_device, owner, device))

    async def set_last_connection(self, owner: str, device: str, ts: int) -> None:
        await self._run(q.set_last_connection, owner, device, ts)

    # device tokens

    async def create_device_token(self, token: DeviceToken) -> None:
        await self._run(q.insert_device_token, token)

    async def list_device_tokens(
        self, owner: str, device: str, page: Page = EVERY
    ) -> list[DeviceToken]:
        return await self._run(q.select_device_tokens, owner, device, page)

    async def get_device_token(self, token_id: str) -> DeviceToken | None:
        return await self._kept(DeviceToken, ("device", token_id), q.select_device_token, token_id)

    async def delete_device_token(self, owner: str, device: str, token_id: str) -> bool:
        return await self._tokens.writing(self._run(q.delete_device_token, owner, device, token_id))

    # user access tokens

    async def create_access_token(self, token: AccessToken) -> None:
        await self._run(q.insert_access_token, token)

    async def get_access_token(self, owner: str, token: str) -> AccessToken | None:
        key = ("access", owner, token)
        return await self._kept(AccessToken, key, q.select_access_token, owner, token)

    async def list_access_tokens(self, owner: str, page: Page = EVERY) -> list[AccessToken]:
        return await self._run(q.select_access_tokens, owner, page)

    async def update_access_token(self, token: AccessToken) -> None:
        await self._tokens.writing(self._run(q.update_access_token, token))

    async def delete_access_token(self, owner: str, token: str) -> bool:
        return await self._tokens.writing(self._run(q.delete_access_token, owner, token))

    # refresh tokens

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._run(q.insert_refresh_token, token)

    async def use_refresh_token(self, jti: str, now: int, grace_ms: int = 0) -> RefreshToken | None:
        return await self._run(q.use_refresh_token, jti, now, grace_ms)

    async def revoke_refresh_tokens(self, user: str) -> int:
        return await self._run(q.revoke_refresh_tokens, user)

    async def revoke_refresh_family(self, jti: str) -> int:
        return await self._run(q.revoke_refresh_family, jti)

    async def purge_refresh_tokens(self, now: int) -> int:
        # in chunks, so that other work reaches the store between them
        purged = 0
        while True:
            count = await self._run(q.purge_refresh_tokens, now, PURGE_CHUNK)
            purged += count
            if count < PURGE_CHUNK:
                return purged

    # device properties

    async def list_device_properties(self, owner: str, device: str) -> list[base.DeviceProperty]:
        return await self._run(qp.select_properties, owner, device)

    async def get_device_property(
        self, owner: str, device: str, prop: str
    ) -> base.DeviceProperty | None:
        return await self._run(qp.select_property, owner, device, prop)

    async def create_device_property(self, prop: base.DeviceProperty, limit: int) -> None:
        await self._run(qp.insert_property, prop, limit)

    async def update_device_property(self, prop: base.DeviceProperty) -> None:
        await self._run(qp.update_property, prop)

    async def set_device_property_value(
        self, owner: str, device: str, prop: str, value: Any, now: int, limit: int
    ) -> None:
        await self._run(qp.set_property_value, owner, device, prop, value, now, limit)

    async def delete_device_property(self, owner: str, device: str, prop: str) -> bool:
        return await self._run(qp.delete_property, owner, device, prop)

    # data buckets

    async def create_bucket(self, bucket: base.Bucket) -> None:
        await self._buckets.writing(self._run(qb.insert_bucket, bucket))

    async def get_bucket(self, owner: str, bucket: str) -> base.Bucket | None:
        key = (owner, bucket)
        kept = self._buckets.get(key)
        if kept is not None:
            return kept
        generation = self._buckets.generation
        record = await self._run(qb.select_bucket, owner, bucket)
        if record is not None:
            self._buckets.put(key, record, generation)
        return record

    async def list_buckets(self, owner: str, page: Page = EVERY) -> list[base.Bucket]:
        return await self._run(qb.select_buckets, owner, page)

    async def list_device_source_buckets(self) -> list[base.Bucket]:
        return await self._run(qb.select_device_source_buckets)

    async def update_bucket(self, bucket: base.Bucket) -> None:
        await self._buckets.writing(self._run(qb.update_bucket, bucket))

    async def delete_bucket(self, owner: str, bucket: str) -> bool:
        return await self._buckets.writing(self._run(qb.delete_bucket, owner, bucket))

    async def write_points(
        self, owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
    ) -> None:
        # encoded here, so that a value that cannot be stored fails this write alone
        write = point_write(owner, bucket, points, replace)
        if self._executor is None:
            raise RuntimeError("store is not open")
        try:
            await self._point_writes.submit(self._executor, write)
        except RoostError:  # NotFound, Conflict, InvalidInput: what callers expect
            raise
        except Exception:
            self.counts.failures["write_points"] += 1
            raise
        self.counts.points_written += len(points)

    async def read_points(
        self,
        owner: str,
        bucket: str,
        min_ts: int | None,
        max_ts: int | None,
        limit: int,
        descending: bool = False,
    ) -> list[base.BucketPoint]:
        return await self._run(qb.select_points, owner, bucket, min_ts, max_ts, limit, descending)

    async def delete_points(
        self, owner: str, bucket: str, min_ts: int | None, max_ts: int | None
    ) -> int:
        return await self._run(qb.delete_points, owner, bucket, min_ts, max_ts)

    async def aggregate_points(
        self, owner: str, bucket: str, query: AggregateQuery
    ) -> list[AggregateRow]:
        async def group(lo: int, hi: int, grouping: Grouping) -> list[Partial]:
            return await self._run(qa.group, owner, bucket, lo, hi, grouping)

        async def seek(ts: int, descending: bool) -> int | None:
            return await self._run(qa.seek, owner, bucket, ts, descending)

        # one job per window: the writes queued meanwhile run between them
        return await walk(query, group, seek)

    async def list_retained_buckets(self) -> list[base.Bucket]:
        return await self._run(qb.select_retained_buckets)

    async def expire_points(self, owner: str, bucket: str, before: int, limit: int) -> int:
        return await self._run(qb.expire_points, owner, bucket, before, limit)

    # endpoints

    async def create_endpoint(self, endpoint: base.Endpoint) -> None:
        await self._run(qe.insert_endpoint, endpoint)

    async def get_endpoint(self, owner: str, endpoint: str) -> base.Endpoint | None:
        return await self._run(qe.select_endpoint, owner, endpoint)

    async def list_endpoints(self, owner: str, page: Page = EVERY) -> list[base.Endpoint]:
        return await self._run(qe.select_endpoints, owner, page)

    async def update_endpoint(self, endpoint: base.Endpoint) -> None:
        await self._run(qe.update_endpoint, endpoint)

    async def delete_endpoint(self, owner: str, endpoint: str) -> bool:
        return await self._run(qe.delete_endpoint, owner, endpoint)

    async def _kept(
        self,
        kind: type[_R],
        key: tuple[str, ...],
        fn: Callable[Concatenate[sqlite3.Connection, _P], _R | None],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _R | None:
        """A token record from the memo, else read (and kept unless a write came meanwhile)."""
        kept = self._tokens.get(key)
        if isinstance(kept, kind):
            return kept
        generation = self._tokens.generation
        record = await self._run(fn, *args, **kwargs)
        if record is not None:
            self._tokens.put(key, record, generation)
        return record

    # the worker thread

    async def _run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Runs ``fn(connection, *args, **kwargs)`` on the worker thread. A failure other than
        the domain errors a method is documented to raise is counted by the method's name."""
        try:
            return await self._submit(functools.partial(self._with_connection, fn, *args, **kwargs))
        except RoostError:  # Conflict, NotFound, InvalidInput: what callers expect
            raise
        except Exception:
            self.counts.failures[fn.__name__] += 1
            raise

    async def _submit(self, work: Callable[[], _T]) -> _T:
        if self._executor is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def _with_connection(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("store is not open")
        changes = conn.total_changes
        try:
            return fn(conn, *args, **kwargs)
        except OverflowError:  # SQLite integers have 64 bits
            raise InvalidInput("a number is too large to be stored") from None
        except UnicodeEncodeError:  # a lone surrogate, which JSON escapes can carry
            raise InvalidInput("a text is not valid Unicode") from None
        finally:
            if self._checkpoints is not None and conn.total_changes != changes:
                self._checkpoints.nudge()

    def _write_points(self, writes: Sequence[PointWrite]) -> list[RoostError | None]:
        if self._conn is None:
            raise RuntimeError("store is not open")
        try:
            return qb.write_points(self._conn, writes)
        finally:
            if self._checkpoints is not None:
                self._checkpoints.nudge()

    def _connect(self) -> None:
        if isinstance(self._path, Path):
            _create_private(self._path)
        self._conn = conn = connect(self._path, self._busy_timeout_ms)
        version = apply_migrations(conn)
        if isinstance(self._path, Path):
            conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            path, busy_timeout_ms = self._path, self._busy_timeout_ms
            self._checkpoints = Checkpointer(lambda: connect(path, busy_timeout_ms))
            self._checkpoints.start()
        logger.debug("SQLite store %s open at schema version %d", self._path, version)

    def _disconnect(self) -> None:
        checkpoints, self._checkpoints = self._checkpoints, None
        if checkpoints is not None:  # before the writer's connection: the last one checkpoints
            checkpoints.stop()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def connect(path: str | Path, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """A connection as the store uses it: autocommit (a statement is a transaction unless we
    say BEGIN), foreign keys on, WAL, ``synchronous = NORMAL`` (THE durability settings: a
    commit survives ``kill -9`` of the process, not always a power loss). The ingest benchmark's
    bare baseline connects with it too."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if conn.execute("PRAGMA foreign_keys").fetchone() != (1,):
        raise RuntimeError("this SQLite build cannot enforce foreign keys")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal" and path != _MEMORY:
        logger.warning("SQLite at %s runs in journal mode %s, not WAL", path, mode)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _create_private(path: Path) -> None:
    """Creates the database file, owner-only (0600), and its directory (0700) if absent, before
    SQLite opens it: SQLite would create it 0644, and it gives the ``-wal`` and ``-shm`` files
    the mode of the database file."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)  # an empty file is an empty database to SQLite
