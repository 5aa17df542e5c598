"""Schema migrations for the SQLite store: numbered ``NNNN_name.sql`` files applied in order.

The files live in ``roost/store/migrations`` and are read through importlib.resources, so they
work from a source tree and from an installed package. ``0001`` creates the ``schema_version``
table; every file is applied once and recorded there. All pending files run in ONE transaction,
begun IMMEDIATE so that two processes opening the same database do not both migrate it: the
database either reaches the newest version or stays where it was.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files

from roost.errors import RoostError

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(folder: str = "migrations") -> list[Migration]:
    """The packaged migrations ordered by version, numbered 1, 2, 3, ... without gaps
    (``folder``: ``migrations`` for SQLite, ``migrations_postgres`` for PostgreSQL)."""
    found: list[Migration] = []
    for entry in (files("roost.store") / folder).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise RoostError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise RoostError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database, 0 for an empty database."""
    table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if table is None:
        return 0
    (version,) = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(version or 0)


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Migration] | None = None
) -> int:
    """Applies the pending migrations and returns the schema version now in force.

    ``conn`` must not be inside a transaction. A database newer than the newest migration
    known here (written by a later Roost) is refused rather than used.
    """
    if migrations is None:
        migrations = load_migrations()
    if conn.in_transaction:
        raise ValueError("apply_migrations needs a connection outside any transaction")
    latest = migrations[-1].version if migrations else 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > latest:
            raise RoostError(
                f"database schema version {version} is newer than this Roost knows ({latest})"
            )
        for migration in migrations:
            if migration.version <= version:
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                (migration.version, time.time_ns() // 1_000_000),
            )
            version = migration.version
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def _statements(script: str) -> Iterator[str]:
    """Splits a script into statements; a ';' inside a string or a trigger body does not end one.

    (``executescript`` cannot be used: it commits any open transaction first.)
    """
    buffer = ""
    *pieces, tail = script.split(";")
    for piece in pieces:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if (buffer + tail).strip():
        yield buffer + tail
