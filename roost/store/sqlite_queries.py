"""The statements of the SQLite store, one function per Store method, run on its worker thread.

Each function takes the connection first. Constraint failures become Conflict (duplicate key) or
NotFound (missing parent row); see :func:`_constraints`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import EVERY, AccessToken, Device, DeviceToken, Page, RefreshToken, User

logger = logging.getLogger("roost.store.sqlite")

_USER = ("name", "password_hash", "role", "created", "enabled")
_DEVICE = (
    *("owner", "device", "name", "description", "type", "credentials_hash", "enabled"),
    *("created", "modified", "last_connection"),
)
_DEVICE_TOKEN = ("id", "owner", "device", "name", "resources", "expires", "created")
_REFRESH_TOKEN = ("jti", "user_name", "family", "issued", "expires", "parent")
_ACCESS_TOKEN = (
    *("owner", "token", "name", "description", "enabled", "allow", "deny", "expire"),
    *("created", "modified", "nonce"),
)


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


def _paged(
    sql: str, params: list[Any], page: Page, order: str, named: tuple[str, ...]
) -> tuple[str, list[Any]]:
    """``sql`` (a SELECT ending in its WHERE clause) narrowed to ``page``: the rows one of whose
    ``named`` columns contains ``page.name`` (LIKE, so ASCII letters in any case), in ``order``,
    then LIMIT and OFFSET. Column names are fixed by the callers, never from a request."""
    params = list(params)
    if page.name:
        pattern = "%" + "".join("\\" + c if c in "\\%_" else c for c in page.name) + "%"
        sql += " AND (" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in named) + ")"
        params += [pattern] * len(named)
    sql += f" ORDER BY {order}"
    if page.count is not None or page.index:
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if page.count is None else page.count, page.index]  # -1: no limit
    return sql, params


# users


def _user_params(user: User) -> dict[str, Any]:
    return asdict(user)


def _user_from(row: tuple[Any, ...]) -> User:
    name, password_hash, role, created, enabled = row
    return User(
        name=name, password_hash=password_hash, role=role, created=created, enabled=bool(enabled)
    )


def insert_user(conn: sqlite3.Connection, user: User) -> None:
    with _constraints(f"user {user.name!r}"):
        conn.execute(_insert("users", _USER), _user_params(user))


def select_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute(_select("users", _USER) + " WHERE name = ?", (name,)).fetchone()
    return None if row is None else _user_from(row)


def select_users(conn: sqlite3.Connection, page: Page = EVERY) -> list[User]:
    sql, params = _paged(_select("users", _USER) + " WHERE 1", [], page, "name", ("name",))
    return [_user_from(row) for row in conn.execute(sql, params)]


def update_user(
    conn: sqlite3.Connection, name: str, role: str | None, enabled: bool | None
) -> User:
    with _transaction(conn):
        if role is not None:
            conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
        if enabled is not None:
            conn.execute("UPDATE users SET enabled = ? WHERE name = ?", (int(enabled), name))
            if not enabled:
                _revoke_all(conn, name)
        user = select_user(conn, name)
        if user is None:
            raise NotFound(f"user {name!r} does not exist")
        return user


def count_users(conn: sqlite3.Connection) -> int:
    (count,) = conn.execute("SELECT COUNT(*) FROM users").fetchone()
    return int(count)


def set_password(conn: sqlite3.Connection, name: str, password_hash: str) -> int:
    with _transaction(conn):
        cursor = conn.execute(
            "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
        )
        if cursor.rowcount == 0:
            raise NotFound(f"user {name!r} does not exist")
        return _revoke_all(conn, name)


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


def insert_device(conn: sqlite3.Connection, device: Device) -> None:
    thing = f"device {device.device!r} of {device.owner!r}"
    with _constraints(thing, parent=f"user {device.owner!r}"):
        conn.execute(_insert("devices", _DEVICE), _device_params(device))


def select_device(conn: sqlite3.Connection, owner: str, device: str) -> Device | None:
    sql = _select("devices", _DEVICE) + " WHERE owner = ? AND device = ?"
    row = conn.execute(sql, (owner, device)).fetchone()
    return None if row is None else _device_from(row)


def select_devices(conn: sqlite3.Connection, owner: str, page: Page = EVERY) -> list[Device]:
    base = _select("devices", _DEVICE) + " WHERE owner = ?"
    sql, params = _paged(base, [owner], page, "device", ("device", "name"))
    return [_device_from(row) for row in conn.execute(sql, params)]


_DEVICE_EDITABLE = ("name", "description", "type", "credentials_hash", "enabled")


def update_device(
    conn: sqlite3.Connection, device: Device, fields: Collection[str] | None = None
) -> None:
    """Replaces what a user may edit (or only ``fields`` of it); the key, created and
    last_connection stay as they are."""
    columns = [c for c in _DEVICE_EDITABLE if fields is None or c in fields]
    assignments = "".join(f"{column} = :{column}, " for column in columns)  # fixed names only
    cursor = conn.execute(
        f"UPDATE devices SET {assignments}modified = :modified"
        " WHERE owner = :owner AND device = :device",
        _device_params(device),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"device {device.device!r} of {device.owner!r} does not exist")


def delete_device(conn: sqlite3.Connection, owner: str, device: str) -> bool:
    """Its device tokens go with it (ON DELETE CASCADE), in the same statement."""
    cursor = conn.execute("DELETE FROM devices WHERE owner = ? AND device = ?", (owner, device))
    return cursor.rowcount > 0


def set_last_connection(conn: sqlite3.Connection, owner: str, device: str, ts: int) -> None:
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


def insert_device_token(conn: sqlite3.Connection, token: DeviceToken) -> None:
    parent = f"device {token.device!r} of {token.owner!r}"
    with _constraints(f"device token {token.id!r}", parent):
        conn.execute(_insert("device_tokens", _DEVICE_TOKEN), _device_token_params(token))


def select_device_tokens(
    conn: sqlite3.Connection, owner: str, device: str, page: Page = EVERY
) -> list[DeviceToken]:
    base = _select("device_tokens", _DEVICE_TOKEN) + " WHERE owner = ? AND device = ?"
    sql, params = _paged(base, [owner, device], page, "created, id", ("id", "name"))
    return [_device_token_from(row) for row in conn.execute(sql, params)]


def select_device_token(conn: sqlite3.Connection, token_id: str) -> DeviceToken | None:
    sql = _select("device_tokens", _DEVICE_TOKEN) + " WHERE id = ?"
    row = conn.execute(sql, (token_id,)).fetchone()
    return None if row is None else _device_token_from(row)


def delete_device_token(conn: sqlite3.Connection, owner: str, device: str, token_id: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM device_tokens WHERE id = ? AND owner = ? AND device = ?",
        (token_id, owner, device),
    )
    return cursor.rowcount > 0


# refresh tokens


def _refresh_token_params(token: RefreshToken) -> dict[str, Any]:
    return {**asdict(token), "user_name": token.user}


def _refresh_token_from(row: tuple[Any, ...]) -> RefreshToken:
    jti, user, family, issued, expires, parent = row
    return RefreshToken(
        jti=jti, user=user, family=family, issued=issued, expires=expires, parent=parent
    )


def insert_refresh_token(conn: sqlite3.Connection, token: RefreshToken) -> None:
    """A token joining a revoked family is born revoked, so that a rotation racing a reuse (or
    a logout) cannot bring the family back to life."""
    sql = (
        "INSERT INTO refresh_tokens (jti, user_name, family, issued, expires, parent, revoked)"
        " VALUES (:jti, :user_name, :family, :issued, :expires, :parent,"
        " EXISTS (SELECT 1 FROM refresh_tokens WHERE family = :family AND revoked))"
    )
    with _constraints(f"refresh token {token.jti!r}", parent=f"user {token.user!r}"):
        conn.execute(sql, _refresh_token_params(token))


def use_refresh_token(
    conn: sqlite3.Connection, jti: str, now: int, grace_ms: int
) -> RefreshToken | None:
    """``used_at`` is when the token was exchanged; a used token without one was used before
    Roost kept it, is a retired successor, or was retried already (see Store.use_refresh_token):
    never a retry. A retry clears the retried token's own ``used_at`` too, so it is taken once."""
    columns = (*_REFRESH_TOKEN, "used", "used_at", "revoked")
    sql = _select("refresh_tokens", columns) + " WHERE jti = ?"
    with _transaction(conn):
        row = conn.execute(sql, (jti,)).fetchone()
        if row is None:
            return None
        *fields, used, used_at, revoked = row
        token = _refresh_token_from(tuple(fields))
        if revoked:
            return None
        if used and _is_retry(conn, token, used_at, now, grace_ms):
            conn.execute(
                "UPDATE refresh_tokens SET used = 1, used_at = NULL WHERE parent = ? OR jti = ?",
                (jti, jti),
            )
            logger.info(
                "refresh token of %s used again within %d ms: a retry", token.user, grace_ms
            )
            return token
        if used:
            conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", (token.family,))
            logger.warning(
                "refresh token reused: family %s of %s revoked", token.family, token.user
            )
            return None
        if now >= token.expires:
            return None
        conn.execute("UPDATE refresh_tokens SET used = 1, used_at = ? WHERE jti = ?", (now, jti))
        return token


def _is_retry(
    conn: sqlite3.Connection, token: RefreshToken, used_at: int | None, now: int, grace_ms: int
) -> bool:
    """Used lately, not expired, and no successor of it used since: its answer was lost."""
    if used_at is None or not used_at <= now < used_at + grace_ms or now >= token.expires:
        return False
    successor_used = conn.execute(
        "SELECT 1 FROM refresh_tokens WHERE parent = ? AND used_at IS NOT NULL LIMIT 1",
        (token.jti,),
    ).fetchone()
    return successor_used is None


def revoke_refresh_tokens(conn: sqlite3.Connection, user: str) -> int:
    with _transaction(conn):
        return _revoke_all(conn, user)


def revoke_refresh_family(conn: sqlite3.Connection, jti: str) -> int:
    with _transaction(conn):
        row = conn.execute("SELECT family FROM refresh_tokens WHERE jti = ?", (jti,)).fetchone()
        if row is None:
            return 0
        (live,) = conn.execute(
            "SELECT COUNT(*) FROM refresh_tokens WHERE family = ? AND NOT used AND NOT revoked",
            row,
        ).fetchone()
        conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?", row)
        return int(live)


def purge_refresh_tokens(conn: sqlite3.Connection, now: int, limit: int) -> int:
    """Deletes up to ``limit`` expired refresh tokens; returns how many."""
    sql = (
        "DELETE FROM refresh_tokens WHERE jti IN"
        " (SELECT jti FROM refresh_tokens WHERE expires <= ? LIMIT ?)"
    )
    with _transaction(conn):
        return conn.execute(sql, (now, limit)).rowcount


def _revoke_all(conn: sqlite3.Connection, user: str) -> int:
    """Counts as live the tokens neither used nor revoked (expiry would need a clock)."""
    (live,) = conn.execute(
        "SELECT COUNT(*) FROM refresh_tokens WHERE user_name = ? AND NOT used AND NOT revoked",
        (user,),
    ).fetchone()
    conn.execute("UPDATE refresh_tokens SET revoked = 1 WHERE user_name = ?", (user,))
    return int(live)


# user access tokens


def _access_token_params(token: AccessToken) -> dict[str, Any]:
    return {
        **asdict(token),
        "enabled": int(token.enabled),
        "allow": json.dumps(token.allow),
        "deny": json.dumps(token.deny),
    }


def _access_token_from(row: tuple[Any, ...]) -> AccessToken:
    owner, token, name, description, enabled, allow, deny, expire, created, modified, nonce = row
    return AccessToken(
        owner=owner,
        token=token,
        name=name,
        description=description,
        enabled=bool(enabled),
        allow=json.loads(allow),
        deny=json.loads(deny),
        expire=expire,
        created=created,
        modified=modified,
        nonce=nonce,
    )


def insert_access_token(conn: sqlite3.Connection, token: AccessToken) -> None:
    thing = f"access token {token.token!r} of {token.owner!r}"
    with _constraints(thing, parent=f"user {token.owner!r}"):
        conn.execute(_insert("access_tokens", _ACCESS_TOKEN), _access_token_params(token))


def select_access_token(conn: sqlite3.Connection, owner: str, token: str) -> AccessToken | None:
    sql = _select("access_tokens", _ACCESS_TOKEN) + " WHERE owner = ? AND token = ?"
    row = conn.execute(sql, (owner, token)).fetchone()
    return None if row is None else _access_token_from(row)


def select_access_tokens(
    conn: sqlite3.Connection, owner: str, page: Page = EVERY
) -> list[AccessToken]:
    base = _select("access_tokens", _ACCESS_TOKEN) + " WHERE owner = ?"
    sql, params = _paged(base, [owner], page, "token", ("token", "name"))
    return [_access_token_from(row) for row in conn.execute(sql, params)]


def update_access_token(conn: sqlite3.Connection, token: AccessToken) -> None:
    cursor = conn.execute(
        "UPDATE access_tokens SET name = :name, description = :description, enabled = :enabled,"
        " allow = :allow, deny = :deny, expire = :expire, modified = :modified"
        " WHERE owner = :owner AND token = :token",
        _access_token_params(token),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"access token {token.token!r} of {token.owner!r} does not exist")


def delete_access_token(conn: sqlite3.Connection, owner: str, token: str) -> bool:
    cursor = conn.execute("DELETE FROM access_tokens WHERE owner = ? AND token = ?", (owner, token))
    return cursor.rowcount > 0
