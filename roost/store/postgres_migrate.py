"""Schema migrations for the PostgreSQL store: ``roost/store/migrations_postgres/NNNN_*.sql``.

All pending files run in ONE transaction that first takes a transaction-scoped advisory lock
(``pg_advisory_xact_lock``): when several nodes start together on an empty database, one migrates
and the others wait for it, then find nothing left to do. The database reaches the newest version
or stays where it was (PostgreSQL's DDL is transactional).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from roost.errors import RoostError
from roost.store.migrate import Migration, load_migrations

FOLDER = "migrations_postgres"
MIGRATION_TIMEOUT = 3600.0  # seconds one migration may take (the store's statements have less)
LOCK_KEY = 0x526F6F73744D6967  # "RoostMig": one key for every Roost, any schema


async def current_version(conn: Any) -> int:
    """The schema version recorded in the database (the search path's schema), 0 if empty."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def apply_migrations(conn: Any, migrations: Sequence[Migration] | None = None) -> int:
    """Applies the pending migrations and returns the schema version now in force; a database
    newer than the newest migration known here is refused."""
    if migrations is None:
        migrations = load_migrations(FOLDER)
    latest = migrations[-1].version if migrations else 0
    async with conn.transaction():
        # another node migrating holds it for as long as its migrations take
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY, timeout=MIGRATION_TIMEOUT)
        version = await current_version(conn)
        if version > latest:
            raise RoostError(
                f"database schema version {version} is newer than this Roost knows ({latest})"
            )
        for migration in migrations:
            if migration.version <= version:
                continue
            # a script (several statements, one round trip), on a big table maybe long
            await conn.execute(migration.sql, timeout=MIGRATION_TIMEOUT)
            await conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES ($1, $2)",
                migration.version,
                time.time_ns() // 1_000_000,
            )
            version = migration.version
    return version
