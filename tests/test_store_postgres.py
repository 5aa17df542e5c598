"""PostgresStore: the Store contract, plus what only a shared server can show (migrations under a
lock, the schema refused when newer, a server that goes away). Needs PostgreSQL: see the
``postgres_url`` fixture of conftest.py."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from roost.errors import RoostError
from roost.store import User
from roost.store.migrate import load_migrations
from roost.store.postgres import PostgresStore
from roost.store.postgres_migrate import FOLDER

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from store_contract import *  # noqa: F403

_T0 = 1_700_000_000_000


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_url)
    await opened.open()
    yield opened
    await opened.close()


def _alice() -> User:
    return User(name="alice", password_hash="h", role="admin", created=_T0)


async def _versions(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
        return [row[0] for row in rows]
    finally:
        await conn.close()


async def test_nodes_opening_together_on_an_empty_database_migrate_once(
    postgres_url: str,
) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert await _versions(postgres_url) == [m.version for m in load_migrations(FOLDER)]
        await stores[0].create_user(_alice())
        assert [await s.get_user("alice") for s in stores] == [_alice()] * 4
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_data_survives_close_and_reopen(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    await first.open()
    await first.create_user(_alice())
    await first.close()
    second = PostgresStore(postgres_url)
    await second.open()
    try:
        assert await second.get_user("alice") == _alice()
        assert await _versions(postgres_url) == [m.version for m in load_migrations(FOLDER)]
    finally:
        await second.close()


async def test_database_from_a_newer_roost_is_refused(postgres_url: str) -> None:
    opened = PostgresStore(postgres_url)
    await opened.open()
    await opened.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("INSERT INTO schema_version (version, applied) VALUES (999, 0)")
    finally:
        await conn.close()
    refused = PostgresStore(postgres_url)
    with pytest.raises(RoostError, match="999"):
        await refused.open()
    with pytest.raises(RuntimeError, match="not open"):
        await refused.count_users()


async def test_closed_store_refuses_work(postgres_url: str) -> None:
    opened = PostgresStore(postgres_url)
    with pytest.raises(RuntimeError, match="not open"):
        await opened.get_user("alice")
    await opened.open()
    with pytest.raises(RuntimeError, match="already open"):
        await opened.open()
    await opened.close()
    await opened.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="not open"):
        await opened.get_user("alice")
