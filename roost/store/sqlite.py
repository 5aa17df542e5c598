"""The embedded store: one SQLite file, one writer, no database work on the event loop.

Every statement runs on ONE dedicated worker thread that owns the only connection; coroutines
hand it work through ``loop.run_in_executor``. Work is thus serialised in submission order. A
write is one statement (atomic on its own) or, where it reads before it writes, one short
``BEGIN IMMEDIATE`` transaction; another process sharing the file, such as an admin command,
waits on ``busy_timeout`` rather than failing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from roost.errors import Conflict, NotFound
from roost.store.base import Device, DeviceToken, RefreshToken, User
from roost.store.migrate import apply_migrations

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

_MEMORY = ":memory:"

_USER = ("name", "password_hash", "role", "created")
_DEVICE = (
    *("owner", "device", "name", "description", "type", "credentials_hash", "enabled"),
    *("created", "modified", "last_connection"),
)
_DEVICE_TOKEN = ("id", "owner", "device", "name", "resources", "expires", "created")
_REFRESH_TOKEN = ("jti", "user_name", "family", "issued", "expires")


class SQLiteStore:
    """The Store on a SQLite file (or ``":memory:"``), in WAL mode with foreign keys on."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self._path = path if path == _MEMORY else Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only

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
        await self._run(_insert_user, user)

    async def get_user(self, name: str) -> User | None:
        return await self._run(_select_user, name)

    async def count_users(self) -> int:
        return await self._run(_count_users)

    # devices

    async def create_device(self, device: Device) -> None:
        await self._run(_insert_device, device)

    async def get_device(self, owner: str, device: str) -> Device | None:
        return await self._run(_select_device, owner, device)

    async def list_devices(self, owner: str) -> list[Device]:
        return await self._run(_select_devices, owner)

    async def update_device(self, device: Device) -> None:
        await self._run(_update_device, device)

    async def delete_device(self, owner: str, device: str) -> bool:
        return await self._run(_delete_device, owner, device)

    async def set_last_connection(self, owner: str, device: str, ts: int) -> None:
        await self._run(_set_last_connection, owner, device, ts)

    # device tokens

    async def create_device_token(self, token: DeviceToken) -> None:
        await self._run(_insert_device_token, token)

    async def list_device_tokens(self, owner: str, device: str) -> list[DeviceToken]:
        return await self._run(_select_device_tokens, owner, device)

    async def get_device_token(self, token_id: str) -> DeviceToken | None:
        return await self._run(_select_device_token, token_id)

    async def delete_device_token(self, owner: str, device: str, token_id: str) -> bool:
        return await self._run(_delete_device_token, owner, device, token_id)

    # refresh tokens

    async def add_refresh_token(self, token: RefreshToken) -> None:
        await self._run(_insert_refresh_token, token)

    async def use_refresh_token(self, jti: str, now: int) -> RefreshToken | None:
        return await self._run(_use_refresh_token, jti, now)

    async def revoke_refresh_tokens(self, user: str) -> int:
        return await self._run(_revoke_refresh_tokens, user)

    # the worker thread

    async def _run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, _P], _T],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> _T:
        """Runs ``fn(connection, *args, **kwargs)`` on the worker thread."""
        return await self._submit(functools.partial(self._with_connection, fn, *args, **kwargs))

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
        if self._conn is None:
            raise RuntimeError("store is not open")
        return fn(self._conn, *args, **kwargs)

    def _connect(self) -> None:
        if isinstance(self._path, Path):
            self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; a statement is a transaction unless we say BEGIN.
        self._conn = conn = sqlite3.connect(self._path, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA foreign_keys").fetchone() != (1,):
            raise RuntimeError("this SQLite build cannot enforce foreign keys")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal" and self._path != _MEMORY:
            logger.warning("SQLite at %s runs in journal mode %s, not WAL", self._path, mode)
        conn.execute("PRAGMA synchronous = NORMAL")
        version = apply_migrations(conn)
        logger.debug("SQLite store %s open at schema version %d", self._path, version)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def _constraints(thing: str, parent: str | None = None) -> Iterator[None]:
    """Turns a duplicate key into Conflict and a missing parent row into NotFound."""
    try:
        yield
    except sqlite3.IntegrityError as e:
        if e.sqlite_errorname in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            raise Conflict(f"{thing} exists already") from e
        if parent is not None and e.sqlite_errorname == "SQLITE_CONSTRAINT_FOREIGNKEY":
            raise NotFound(f"{parent} does not exist") from e
        raise


def _insert(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in columns)})"


def _select(table: str, columns: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"


# users


def _user_params(user: User) -> dict[str, Any]:
    return asdict(user)


def _user_from(row: tuple[Any, ...]) -> User:
    name, password_hash, role, created = row
    return User(name=name, password_hash=password_hash, role=role, created=created)


def _insert_user(conn: sqlite3.Connection, user: User) -> None:
    with _constraints(f"user {user.name!r}"):
        conn.execute(_insert("users", _USER), _user_params(user))


def _select_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(_select("users", _USER) + " WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user_from(row)


def _count_users(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM users").fetchone()
    return int(count)


# devices


def _device_params(device: Device) -> dict[str, Any]:
    return {**asdict(device), "enabled": int(device.enabled)}


def _device_from(row: tuple[Any, ...]) -> Device:
    owner, device, name, description, type_, credentials_hash, enabled, *times = row
    created, modified, last_connection = times
    return Device(
        owner=owner,
        device=device,
        name=name,
        description=description,
        type=type_,
        credentials_hash=credentials_hash,
        enabled=bool(enabled),
        created=created,
        modified=modified,
        last_connection=last_connection,
    )


def _insert_device(conn: sqlite3.Connection, device: Device) -> None:
    thing = f"device {device.device!r} of {device.owner!r}"
    with _constraints(thing, parent=f"user {device.owner!r}"):
        conn.execute(_insert("devices", _DEVICE), _device_params(device))


def _select_device(conn: sqlite3.Connection, owner: str, device: str) -> Device | None:
    sql = _select("devices", _DEVICE) + " WHERE owner = ? AND device = ?"
    row = conn.execute(sql, (owner, device)).fetchone()
    return None if row is None else _device_from(row)


def _select_devices(conn: sqlite3.Connection, owner: str) -> list[Device]:
    sql = _select("devices", _DEVICE) + " WHERE owner = ? ORDER BY device"
    return [_device_from(row) for row in conn.execute(sql, (owner,))]


def _update_device(conn: sqlite3.Connection, device: Device) -> None:
    """Replaces what a user may edit; the key, created and last_connection stay as they are."""
    cursor = conn.execute(
        "UPDATE devices SET name = :name, description = :description, type = :type,"
        " credentials_hash = :credentials_hash, enabled = :enabled, modified = :modified"
        " WHERE owner = :owner AND device = :device",
        _device_params(device),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"device {device.device!r} of {device.owner!r} does not exist")


def _delete_device(conn: sqlite3.Connection, owner: str, device: str) -> bool:
    """Its device tokens go with it (ON DELETE CASCADE), in the same statement."""
    cursor = conn.execute("DELETE FROM devices WHERE owner = ? AND device = ?", (owner, device))
    return cursor.rowcount > 0


def _set_last_connection(conn: sqlite3.Connection, owner: str, device: str, ts: int) -> None:
    conn.execute(
        "UPDATE devices SET last_connection = ? WHERE owner = ? AND device = ?", (ts, owner, device)
    )


# device tokens


def _device_token_params(token: DeviceToken) -> dict[str, Any]:
    resources = None if token.resources is None else json.dumps(list(token.resources))
    return {**asdict(token), "resources": resources}


def _device_token_from(row: tuple[Any, ...]) -> DeviceToken:
    id_, owner, device, name, resources, expires, created = row
    return DeviceToken(
        id=id_,
        owner=owner,
        device=device,
        name=name,
        resources=None if resources is None else tuple(json.loads(resources)),
        expires=expires,
        created=created,
    )


def _insert_device_token(conn: sqlite3.Connection, token: DeviceToken) -> None:
    parent = f"device {token.device!r} of {token.owner!r}"
    with _constraints(f"device token {token.id!r}", parent):
        conn.execute(_insert("device_tokens", _DEVICE_TOKEN), _device_token_params(token))


def _select_device_tokens(conn: sqlite3.Connection, owner: str, device: str) -> list[DeviceToken]:
    sql = _select("device_tokens", _DEVICE_TOKEN) + " WHERE owner = ? AND device = ?"
    rows = conn.execute(sql + " ORDER BY created, id", (owner, device))
    return [_device_token_from(row) for row in rows]


def _select_device_token(conn: sqlite3.Connection, token_id: str) -> DeviceToken | None:
    sql = _select("device_tokens", _DEVICE_TOKEN) + " WHERE id = ?"
    row = conn.execute(sql, (token_id,)).fetchone()
    return None if row is None else _device_token_from(row)


def _delete_device_token(conn: sqlite3.Connection, owner: str, device: str, token_id: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM device_tokens WHERE id = ? AND owner = ? AND device = ?",
        (token_id, owner, device),
    )
    return cursor.rowcount > 0


# refresh tokens


def _refresh_token_params(token: RefreshToken) -> dict[str, Any]:
    return {**asdict(token), "user_name": token.user}


def _refresh_token_from(row: tuple[Any, ...]) -> RefreshToken:
    jti, user, family, issued, expires = row
    return RefreshToken(jti=jti, user=user, family=family, issued=issued, expires=expires)


def _insert_refresh_token(conn: sqlite3.Connection, token: RefreshToken) -> None:
    """A token joining a revoked family is born revoked, so that a rotation racing a reuse (or
    a logout) cannot bring the family back to life."""
    sql = (
        "INSERT INTO refresh_tokens (jti, user_name, family, issued, expires, revoked)"
        " VALUES (:jti, :user_name, :family, :issued, :expires,"
        " EXISTS (SELECT 1 FROM refresh_tokens WHERE family = :family AND revoked))"
    )
    with _constraints(f"refresh token {token.jti!r}", parent=f"user {token.user!r}"):
        conn.execute(sql, _refresh_token_params(token))


def _use_refresh_token(conn: sqlite3.Connection, jti: str, now: int) -> RefreshToken | None:
    sql = _select("refresh_tokens", (*_REFRESH_TOKEN, "used", "revoked")) + " WHERE jti = ?"
    with _transaction(conn):
        row = conn.execute(sql, (jti,)).fetchone()
        if row is None:
            return None
        *fields, used, revoked = row
        token = _refresh_token_from(tuple(fields))
        if revoked:
            return None
        if used:
            conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", (token.family,))
            logger.warning(
                "refresh token reused: family %s of %s revoked", token.family, token.user
            )
            return None
        if now >= token.expires:
            return None
        conn.execute("UPDATE refresh_tokens SET used = 1 WHERE jti = ?", (jti,))
        return token


def _revoke_refresh_tokens(conn: sqlite3.Connection, user: str) -> int:
    """Counts as live the tokens neither used nor revoked (expiry would need a clock)."""
    with _transaction(conn):
        (live,) = conn.execute(
            "SELECT COUNT(*) FROM refresh_tokens WHERE user_name = ? AND NOT used AND NOT revoked",
            (user,),
        ).fetchone()
        conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE user_name = ?", (user,))
    return int(live)
