"""The shared store: PostgreSQL through a pool of asyncpg connections (``ROOST_DATABASE_URL``).

Several nodes use one database. Each call takes a connection from the pool for one statement or
one short transaction (the statements live in ``postgres_queries``, ``postgres_properties``,
``postgres_buckets``, ``postgres_aggregate`` and ``postgres_endpoints``). Nothing waits without
bound: taking a connection and each statement have a timeout, and when the server cannot be
reached (down, restarting, a timeout) the call raises :class:`~roost.errors.Unavailable` (503);
the pool replaces broken connections by itself, so the next call works once the server is back.

Point writes go in groups (``postgres_points``): those queued while a group is in flight share the
next transaction, each caller answered after the commit that holds its write. They commit in the
order they came, as on SQLite's one thread (queued at once, one group at a time), and reads of a
bucket's record that go to the database keep their order too (``postgres_order``): a device's
bucket writes (read the bucket, then write) keep their order.

Token records are kept in a :class:`~roost.store.memo.Memo` for ``token_memo_seconds``, and bucket
records (read by every device bucket write) for ``bucket_memo_seconds``, as in the SQLite store:
this node's writes forget them at once, other nodes' writes are seen within that, or at once when
the bus tells of them (:meth:`PostgresStore.changed_elsewhere`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

from roost.errors import ConfigError, InvalidInput, RoostError, Unavailable
from roost.store import base
from roost.store import postgres_aggregate as qa
from roost.store import postgres_buckets as qb
from roost.store import postgres_endpoints as qe
from roost.store import postgres_points as qpw
from roost.store import postgres_properties as qp
from roost.store import postgres_queries as q
from roost.store.aggregate import AggregateQuery, AggregateRow, Grouping, Partial, walk
from roost.store.base import EVERY, AccessToken, Device, DeviceToken, Page, RefreshToken, User
from roost.store.group_commit import AsyncGroupCommit
from roost.store.memo import Memo
from roost.store.point_writes import PointWrite, point_write
from roost.store.postgres_migrate import apply_migrations
from roost.store.postgres_order import InOrder
from roost.store.postgres_sql import invalid

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")
_R = TypeVar("_R", AccessToken, DeviceToken, base.Bucket)

PURGE_CHUNK = 1000  # expired refresh tokens deleted per statement
# the server cannot be reached, or went away mid-call: retry later (asyncpg's own classes)
_GONE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
    asyncpg.CannotConnectNowError,
)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


class PostgresStore:
    """The Store on a PostgreSQL database (the URL's search_path option picks a schema)."""

    def __init__(
        self,
        url: str,
        *,
        token_memo_seconds: float = 2.0,
        bucket_memo_seconds: float = 2.0,
        pool_size: int = 10,
        timeout: float = 5.0,
        counts: base.StoreCounts | None = None,
    ) -> None:
        self._url = url
        self.counts = counts if counts is not None else base.StoreCounts()  # for roost.metrics
        self._pool_size = pool_size
        self._timeout = timeout
        self._tokens: Memo[tuple[str, ...], AccessToken | DeviceToken] = Memo(token_memo_seconds)
        self._bucket_records: Memo[tuple[str, str], base.Bucket] = Memo(bucket_memo_seconds)
        self._pool: Any = None
        self._buckets = InOrder()  # reads of a bucket's record that go to the database, in order
        # a group's failure counts once, as operation write_points (roost_store_errors)
        self._point_writes = AsyncGroupCommit[PointWrite](
            lambda writes: self._run(qpw.write_points, writes)
        )

    async def open(self) -> None:
        """Connects (the pool) and applies pending migrations under the migration lock."""
        if self._pool is not None:
            raise RuntimeError("store is already open")
        try:
            pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout,  # to connect
                command_timeout=self._timeout * 2,  # a statement (migrations have their own)
            )
        except _GONE as e:
            raise Unavailable(f"PostgreSQL cannot be reached: {_reason(e)}") from None
        except asyncpg.PostgresError as e:  # a wrong password, no such database, ...
            raise ConfigError(f"PostgreSQL refused the connection: {e}") from None
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                version = await apply_migrations(conn)
        except BaseException as e:
            pool.terminate()
            if isinstance(e, asyncpg.PostgresError):  # no right to create tables, ...
                raise ConfigError(f"PostgreSQL refused the schema migration: {e}") from None
            if isinstance(e, _GONE):
                raise Unavailable(f"PostgreSQL cannot be reached: {_reason(e)}") from None
            raise
        self._pool = pool
        logger.debug("PostgreSQL store open at schema version %d", version)

    def changed_elsewhere(self) -> None:
        self._tokens.invalidate()
        self._bucket_records.invalidate()

    async def close(self) -> None:
        await self._point_writes.wait_idle()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except TimeoutError:
                pool.terminate()

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
        await self._bucket_records.writing(self._run(qb.insert_bucket, bucket))

    async def get_bucket(self, owner: str, bucket: str) -> base.Bucket | None:
        key = (owner, bucket)
        kept = self._bucket_records.get(key)
        if kept is not None and key not in self._buckets:  # no read of it under way to wait for
            return kept
        async with self._buckets.turn(key):  # a device write's first step
            return await self._kept(base.Bucket, key, qb.select_bucket, owner, bucket)

    async def list_buckets(self, owner: str, page: Page = EVERY) -> list[base.Bucket]:
        return await self._run(qb.select_buckets, owner, page)

    async def list_device_source_buckets(self) -> list[base.Bucket]:
        return await self._run(qb.select_device_source_buckets)

    async def update_bucket(self, bucket: base.Bucket) -> None:
        await self._bucket_records.writing(self._run(qb.update_bucket, bucket))

    async def delete_bucket(self, owner: str, bucket: str) -> bool:
        return await self._bucket_records.writing(self._run(qb.delete_bucket, owner, bucket))

    async def write_points(
        self, owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
    ) -> None:
        if not points:
            return
        # encoded here, so that a value that cannot be stored fails this write alone
        write = point_write(owner, bucket, points, replace)
        # queued at once, and groups run one at a time: writes commit in the order they came
        await self._point_writes.queue(write)
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

    async def run(
        self,
        fn: Callable[Concatenate[Any, _P], Awaitable[_T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Runs ``fn(connection, *args, **kwargs)`` on one pooled connection, with the store's
        error mapping (for work beyond the Store protocol: ``postgres_copy``)."""
        return await self._run(fn, *args, **kwargs)

    async def _kept(
        self,
        kind: type[_R],
        key: tuple[str, ...],
        fn: Callable[Concatenate[Any, _P], Awaitable[_R | None]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _R | None:
        """A token or bucket record from its memo, else read (and kept unless a write came
        meanwhile)."""
        memo: Memo[Any, Any] = self._bucket_records if kind is base.Bucket else self._tokens
        kept = memo.get(key)
        if isinstance(kept, kind):
            return kept
        generation = memo.generation
        record = await self._run(fn, *args, **kwargs)
        if record is not None:
            memo.put(key, record, generation)
        return record

    async def _run(
        self,
        fn: Callable[Concatenate[Any, _P], Awaitable[_T]],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Runs ``fn(connection, *args, **kwargs)`` on a pooled connection, the failures of the
        server or of a value mapped to domain errors."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("store is not open")
        try:
            async with pool.acquire(timeout=self._timeout) as conn:
                return await fn(conn, *args, **kwargs)
        except asyncpg.DataError as e:  # out of range, not valid text (a NUL, a surrogate)
            raise InvalidInput(invalid(e)) from None
        except ValueError as e:  # a JSON value with NaN; asyncpg's own DataError is one too
            raise InvalidInput(invalid(e)) from None
        except _GONE as e:
            self.counts.failures[fn.__name__] += 1
            logger.warning("PostgreSQL unavailable: %s", _reason(e))
            raise Unavailable("the database is unavailable, retry shortly") from None
        except RoostError:  # Conflict, NotFound: what callers expect
            raise
        except Exception:
            self.counts.failures[fn.__name__] += 1
            raise


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
