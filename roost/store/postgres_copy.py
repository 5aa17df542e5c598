"""``roost migrate-to-postgres``: copy a SQLite data dir's database into an empty PostgreSQL one.

The target is migrated to the newest schema first, then must be empty. Every table is copied in
ONE PostgreSQL transaction with ``COPY`` (asyncpg's ``copy_records_to_table``), bucket points in
batches read one after the other from SQLite, so memory stays flat whatever their number: the
target ends with everything or, on any failure, nothing. The source is opened read-only and must
be at the newest SQLite schema (``roost serve`` on it brings an older one there).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg

from roost.errors import Conflict, NotFound, RoostError
from roost.store.migrate import current_version, load_migrations
from roost.store.postgres import PostgresStore

logger = logging.getLogger(__name__)

BATCH = 10_000  # rows read from SQLite and sent to PostgreSQL at once
_BOOLEANS = frozenset({"enabled", "used", "revoked"})  # 0/1 in SQLite, boolean in PostgreSQL
# in an order that puts every row after the row it refers to
TABLES = (
    ("users", ("name", "password_hash", "role", "created", "enabled")),
    (
        "devices",
        (
            *("owner", "device", "name", "description", "type", "credentials_hash", "enabled"),
            *("created", "modified", "last_connection"),
        ),
    ),
    ("device_tokens", ("id", "owner", "device", "name", "resources", "expires", "created")),
    (
        "refresh_tokens",
        (
            *("jti", "user_name", "family", "issued", "expires", "used", "revoked", "parent"),
            "used_at",
        ),
    ),
    (
        "access_tokens",
        (
            *("owner", "token", "name", "description", "enabled", "allow", "deny", "expire"),
            *("created", "modified", "nonce"),
        ),
    ),
    (
        "device_properties",
        (
            *("owner", "device", "property", "name", "description", "type", "value"),
            *("created", "modified"),
        ),
    ),
    (
        "buckets",
        (
            *("owner", "bucket", "name", "description", "enabled", "config", "retention"),
            *("created", "modified"),
        ),
    ),
    ("bucket_points", ("owner", "bucket", "ts", "value")),
    (
        "endpoints",
        (
            *("owner", "endpoint", "name", "description", "enabled", "type", "config"),
            *("created", "modified"),
        ),
    ),
)


async def copy_to_postgres(
    database: Path, url: str, progress: Callable[[str, int], None] | None = None
) -> dict[str, int]:
    """Copies the SQLite ``database`` into the empty PostgreSQL database at ``url``; returns the
    rows copied per table. Conflict if the target holds data, NotFound without the source."""
    if not database.is_file():
        raise NotFound(f"{str(database)!r} does not exist")
    source = _open_source(database)
    try:
        store = PostgresStore(url, timeout=30.0)
        await store.open()  # the target at the newest schema
        try:
            return await store.run(_copy_all, source, progress)
        finally:
            await store.close()
    finally:
        source.close()


def _open_source(database: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version, latest = current_version(conn), len(load_migrations())
    except sqlite3.Error as e:
        conn.close()
        raise RoostError(f"{str(database)!r} is not a Roost database: {e}") from None
    if version != latest:
        conn.close()
        raise RoostError(
            f"{str(database)!r} is at schema {version}, not {latest}: run this Roost's "
            "`roost serve` on it once first"
        )
    return conn


async def _copy_all(
    conn: Any, source: sqlite3.Connection, progress: Callable[[str, int], None] | None
) -> dict[str, int]:
    copied: dict[str, int] = {}
    async with conn.transaction():
        for table, _ in TABLES:
            if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                raise Conflict(f"the PostgreSQL database is not empty ({table} has rows)")
        for table, columns in TABLES:
            copied[table] = 0
            for batch in _batches(source, table, columns):
                try:
                    await conn.copy_records_to_table(table, records=batch, columns=columns)
                except asyncpg.PostgresError as e:
                    raise RoostError(f"a row of {table} cannot be copied: {e}") from None
                copied[table] += len(batch)
                if progress is not None:
                    progress(table, copied[table])
    return copied


def _batches(
    source: sqlite3.Connection, table: str, columns: tuple[str, ...]
) -> Iterator[list[tuple[Any, ...]]]:
    flags = [column in _BOOLEANS for column in columns]
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")  # fixed names only
    while rows := cursor.fetchmany(BATCH):
        yield [
            tuple(
                bool(v) if flag and v is not None else v for v, flag in zip(row, flags, strict=True)
            )
            for row in rows
        ]
