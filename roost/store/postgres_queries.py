"""The statements of the PostgreSQL store for users, devices and tokens, one coroutine per Store
method. Each takes a pooled connection first; constraint failures become Conflict or NotFound.
Reads that decide a write (a refresh token's use, a revocation's count) lock the rows they read
(``FOR UPDATE``), since several connections, and several nodes, write at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from typing import Any

from roost.errors import NotFound
from roost.store.base import EVERY, AccessToken, Device, DeviceToken, Page, RefreshToken, User
from roost.store.postgres_sql import constraints, count, paged, text

logger = logging.getLogger("roost.store.postgres")

Conn = Any  # an asyncpg connection (asyncpg ships no types)

USER = ("name", "password_hash", "role", "created", "enabled")
DEVICE = (
    *("owner", "device", "name", "description", "type", "credentials_hash", "enabled"),
    *("created", "modified", "last_connection"),
)
DEVICE_TOKEN = ("id", "owner", "device", "name", "resources", "expires", "created")
REFRESH_TOKEN = ("jti", "user_name", "family", "issued", "expires", "parent")
ACCESS_TOKEN = (
    *("owner", "token", "name", "description", "enabled", "allow", "deny", "expire"),
    *("created", "modified", "nonce"),
)


def insert(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


def select(table: str, columns: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(columns)} FROM {table}"


# users


def _user_from(row: Any) -> User:
    name, password_hash, role, created, enabled = row
    return User(name=name, password_hash=password_hash, role=role, created=created, enabled=enabled)


async def insert_user(conn: Conn, user: User) -> None:
    with constraints(f"user {user.name!r}"):
        await conn.execute(insert("users", USER), *(getattr(user, c) for c in USER))


async def select_user(conn: Conn, name: str) -> User | None:
    row = await conn.fetchrow(select("users", USER) + " WHERE name = $1", name)
    return None if row is None else _user_from(row)


async def select_users(conn: Conn, page: Page = EVERY) -> list[User]:
    sql, params = paged(select("users", USER) + " WHERE true", [], page, "name", ("name",))
    return [_user_from(row) for row in await conn.fetch(sql, *params)]


async def update_user(conn: Conn, name: str, role: str | None, enabled: bool | None) -> User:
    async with conn.transaction():
        row = await conn.fetchrow(
            "UPDATE users SET role = COALESCE($2, role), enabled = COALESCE($3, enabled)"
            f" WHERE name = $1 RETURNING {', '.join(USER)}",
            name,
            role,
            enabled,
        )
        if row is None:
            raise NotFound(f"user {name!r} does not exist")
        if enabled is False:
            await _revoke_all(conn, name)
        return _user_from(row)


async def count_users(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT COUNT(*) FROM users"))


async def set_password(conn: Conn, name: str, password_hash: str) -> int:
    async with conn.transaction():
        status = await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE name = $1", name, password_hash
        )
        if count(status) == 0:
            raise NotFound(f"user {name!r} does not exist")
        return await _revoke_all(conn, name)


# devices


def _device_from(row: Any) -> Device:
    return Device(*row)


async def insert_device(conn: Conn, device: Device) -> None:
    thing = f"device {device.device!r} of {device.owner!r}"
    with constraints(thing, parent=f"user {device.owner!r}"):
        await conn.execute(insert("devices", DEVICE), *(getattr(device, c) for c in DEVICE))


async def select_device(conn: Conn, owner: str, device: str) -> Device | None:
    sql = select("devices", DEVICE) + " WHERE owner = $1 AND device = $2"
    row = await conn.fetchrow(sql, owner, device)
    return None if row is None else _device_from(row)


async def select_devices(conn: Conn, owner: str, page: Page = EVERY) -> list[Device]:
    base = select("devices", DEVICE) + " WHERE owner = $1"
    sql, params = paged(base, [owner], page, "device", ("device", "name"))
    return [_device_from(row) for row in await conn.fetch(sql, *params)]


_DEVICE_EDITABLE = ("name", "description", "type", "credentials_hash", "enabled")


async def update_device(conn: Conn, device: Device, fields: Collection[str] | None = None) -> None:
    columns = [c for c in _DEVICE_EDITABLE if fields is None or c in fields]
    params = [device.owner, device.device, device.modified, *(getattr(device, c) for c in columns)]
    assignments = "".join(f"{c} = ${i}, " for i, c in enumerate(columns, start=4))  # fixed names
    status = await conn.execute(
        f"UPDATE devices SET {assignments}modified = $3 WHERE owner = $1 AND device = $2", *params
    )
    if count(status) == 0:
        raise NotFound(f"device {device.device!r} of {device.owner!r} does not exist")


async def delete_device(conn: Conn, owner: str, device: str) -> bool:
    """Its tokens and properties go with it (ON DELETE CASCADE), in the same statement."""
    status = await conn.execute(
        "DELETE FROM devices WHERE owner = $1 AND device = $2", owner, device
    )
    return count(status) > 0


async def set_last_connection(conn: Conn, owner: str, device: str, ts: int) -> None:
    await conn.execute(
        "UPDATE devices SET last_connection = $3 WHERE owner = $1 AND device = $2",
        owner,
        device,
        ts,
    )


# device tokens


def _device_token_from(row: Any) -> DeviceToken:
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


async def insert_device_token(conn: Conn, token: DeviceToken) -> None:
    resources = None if token.resources is None else json.dumps(list(token.resources))
    values = [token.id, token.owner, token.device, token.name, resources]
    parent = f"device {token.device!r} of {token.owner!r}"
    with constraints(f"device token {token.id!r}", parent):
        await conn.execute(
            insert("device_tokens", DEVICE_TOKEN), *values, token.expires, token.created
        )


async def select_device_tokens(
    conn: Conn, owner: str, device: str, page: Page = EVERY
) -> list[DeviceToken]:
    base = select("device_tokens", DEVICE_TOKEN) + " WHERE owner = $1 AND device = $2"
    sql, params = paged(base, [owner, device], page, "created, id", ("id", "name"))
    return [_device_token_from(row) for row in await conn.fetch(sql, *params)]


async def select_device_token(conn: Conn, token_id: str) -> DeviceToken | None:
    row = await conn.fetchrow(select("device_tokens", DEVICE_TOKEN) + " WHERE id = $1", token_id)
    return None if row is None else _device_token_from(row)


async def delete_device_token(conn: Conn, owner: str, device: str, token_id: str) -> bool:
    status = await conn.execute(
        "DELETE FROM device_tokens WHERE id = $1 AND owner = $2 AND device = $3",
        token_id,
        owner,
        device,
    )
    return count(status) > 0


# refresh tokens


def _refresh_token_from(row: Any) -> RefreshToken:
    jti, user, family, issued, expires, parent = row
    return RefreshToken(
        jti=jti, user=user, family=family, issued=issued, expires=expires, parent=parent
    )


async def insert_refresh_token(conn: Conn, token: RefreshToken) -> None:
    """A token joining a revoked family is born revoked (see the SQLite store)."""
    sql = (
        "INSERT INTO refresh_tokens (jti, user_name, family, issued, expires, parent, revoked)"
        " VALUES ($1, $2, $3, $4, $5, $6,"
        " EXISTS (SELECT 1 FROM refresh_tokens WHERE family = $3 AND revoked))"
    )
    values = (token.jti, token.user, token.family, token.issued, token.expires, token.parent)
    with constraints(f"refresh token {token.jti!r}", parent=f"user {token.user!r}"):
        await conn.execute(sql, *values)


async def use_refresh_token(conn: Conn, jti: str, now: int, grace_ms: int) -> RefreshToken | None:
    """As the SQLite store's, the token's row locked for the transaction: of concurrent uses,
    one exchanges it and the others see it used."""
    columns = (*REFRESH_TOKEN, "used", "used_at", "revoked")
    sql = select("refresh_tokens", columns) + " WHERE jti = $1 FOR UPDATE"
    async with conn.transaction():
        row = await conn.fetchrow(sql, jti)
        if row is None:
            return None
        *fields, used, used_at, revoked = row
        token = _refresh_token_from(fields)
        if revoked:
            return None
        if used and await _is_retry(conn, token, used_at, now, grace_ms):
            await conn.execute(
                "UPDATE refresh_tokens SET used = true, used_at = NULL"
                " WHERE parent = $1 OR jti = $1",
                jti,
            )
            logger.info(
                "refresh token of %s used again within %d ms: a retry", token.user, grace_ms
            )
            return token
        if used:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked = true WHERE family = $1", token.family
            )
            logger.warning(
                "refresh token reused: family %s of %s revoked", token.family, token.user
            )
            return None
        if now >= token.expires:
            return None
        await conn.execute(
            "UPDATE refresh_tokens SET used = true, used_at = $2 WHERE jti = $1", jti, now
        )
        return token


async def _is_retry(
    conn: Conn, token: RefreshToken, used_at: int | None, now: int, grace_ms: int
) -> bool:
    if used_at is None or not used_at <= now < used_at + grace_ms or now >= token.expires:
        return False
    successor_used = await conn.fetchval(
        "SELECT 1 FROM refresh_tokens WHERE parent = $1 AND used_at IS NOT NULL LIMIT 1",
        token.jti,
    )
    return successor_used is None


async def revoke_refresh_tokens(conn: Conn, user: str) -> int:
    async with conn.transaction():
        return await _revoke_all(conn, user)


async def revoke_refresh_family(conn: Conn, jti: str) -> int:
    async with conn.transaction():
        family = await conn.fetchval("SELECT family FROM refresh_tokens WHERE jti = $1", jti)
        if family is None:
            return 0
        return await _revoke(conn, "family", family)


async def purge_refresh_tokens(conn: Conn, now: int, limit: int) -> int:
    status = await conn.execute(
        "DELETE FROM refresh_tokens WHERE jti IN"
        " (SELECT jti FROM refresh_tokens WHERE expires <= $1 LIMIT $2)",
        now,
        limit,
    )
    return count(status)


async def _revoke_all(conn: Conn, user: str) -> int:
    return await _revoke(conn, "user_name", user)


async def _revoke(conn: Conn, column: str, value: str) -> int:
    """Revokes the tokens whose ``column`` (a fixed name) is ``value``; how many were live
    (neither used nor revoked), counted on the rows locked by the update itself."""
    live = await conn.fetchval(
        f"WITH changed AS (UPDATE refresh_tokens AS t SET revoked = true"
        f" FROM refresh_tokens AS old WHERE t.{column} = $1 AND old.jti = t.jti"
        f" RETURNING old.used, old.revoked)"
        f" SELECT COUNT(*) FROM changed WHERE NOT used AND NOT revoked",
        value,
    )
    return int(live)


# user access tokens


def _access_token_from(row: Any) -> AccessToken:
    owner, token, name, description, enabled, allow, deny, expire, created, modified, nonce = row
    return AccessToken(
        owner=owner,
        token=token,
        name=name,
        description=description,
        enabled=enabled,
        allow=json.loads(allow),
        deny=json.loads(deny),
        expire=expire,
        created=created,
        modified=modified,
        nonce=nonce,
    )


def _access_token_values(token: AccessToken) -> list[Any]:
    json_fields = {"allow": text(token.allow), "deny": text(token.deny)}
    return [json_fields.get(c, getattr(token, c, None)) for c in ACCESS_TOKEN]


async def insert_access_token(conn: Conn, token: AccessToken) -> None:
    values = _access_token_values(token)
    thing = f"access token {token.token!r} of {token.owner!r}"
    with constraints(thing, parent=f"user {token.owner!r}"):
        await conn.execute(insert("access_tokens", ACCESS_TOKEN), *values)


async def select_access_token(conn: Conn, owner: str, token: str) -> AccessToken | None:
    sql = select("access_tokens", ACCESS_TOKEN) + " WHERE owner = $1 AND token = $2"
    row = await conn.fetchrow(sql, owner, token)
    return None if row is None else _access_token_from(row)


async def select_access_tokens(conn: Conn, owner: str, page: Page = EVERY) -> list[AccessToken]:
    base = select("access_tokens", ACCESS_TOKEN) + " WHERE owner = $1"
    sql, params = paged(base, [owner], page, "token", ("token", "name"))
    return [_access_token_from(row) for row in await conn.fetch(sql, *params)]


async def update_access_token(conn: Conn, token: AccessToken) -> None:
    status = await conn.execute(
        "UPDATE access_tokens SET name = $3, description = $4, enabled = $5, allow = $6,"
        " deny = $7, expire = $8, modified = $9 WHERE owner = $1 AND token = $2",
        token.owner,
        token.token,
        token.name,
        token.description,
        token.enabled,
        text(token.allow),
        text(token.deny),
        token.expire,
        token.modified,
    )
    if count(status) == 0:
        raise NotFound(f"access token {token.token!r} of {token.owner!r} does not exist")


async def delete_access_token(conn: Conn, owner: str, token: str) -> bool:
    status = await conn.execute(
        "DELETE FROM access_tokens WHERE owner = $1 AND token = $2", owner, token
    )
    return count(status) > 0
