"""SQLiteStore: the Store contract, plus what only a file on disk can show."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roost.errors import RoostError
from roost.store import AccessToken, Device, RefreshToken, User
from roost.store import sqlite as sqlite_store
from roost.store.migrate import Migration, apply_migrations, current_version, load_migrations
from roost.store.sqlite import SQLiteStore

if str(Path(__file__).parent) not in sys.path:  # the contract module sits next to this one
    sys.path.insert(0, str(Path(__file__).parent))

from store_contract import *  # noqa: F403

_T0 = 1_700_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "roost.db")
    await opened.open()
    yield opened
    await opened.close()


def _alice() -> User:
    return User(name="alice", password_hash="h", role="admin", created=_T0)


def _dev(device: str) -> Device:
    return Device("alice", device, device, "", "Generic", None, True, _T0, _T0, None)


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    first = SQLiteStore(path)
    await first.open()
    await first.create_user(_alice())
    await first.create_device(_dev("dev1"))
    await first.set_last_connection("alice", "dev1", _T0 + 1)
    await first.close()

    second = SQLiteStore(str(path))
    await second.open()
    try:
        assert await second.get_user("alice") == _alice()
        got = await second.get_device("alice", "dev1")
        assert got is not None and got.last_connection == _T0 + 1
    finally:
        await second.close()


async def test_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    latest = [m.version for m in load_migrations()]
    for _ in range(3):
        opened = SQLiteStore(path)
        await opened.open()
        await opened.close()
        assert _versions(path) == latest


async def test_database_from_a_newer_roost_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    opened = SQLiteStore(path)
    await opened.open()
    await opened.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied) VALUES (999, 0)")
    refused = SQLiteStore(path)
    with pytest.raises(RoostError, match="999"):
        await refused.open()
    with pytest.raises(RuntimeError, match="not open"):
        await refused.count_users()


async def test_file_is_in_wal_mode_and_parent_dirs_are_made(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "roost.db"
    opened = SQLiteStore(path)
    await opened.open()
    await opened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_in_memory_database_works() -> None:
    opened = SQLiteStore(":memory:")
    await opened.open()
    try:
        await opened.create_user(_alice())
        assert await opened.count_users() == 1
    finally:
        await opened.close()


async def test_closed_store_refuses_work_and_can_reopen(tmp_path: Path) -> None:
    opened = SQLiteStore(tmp_path / "roost.db")
    with pytest.raises(RuntimeError, match="not open"):
        await opened.get_user("alice")
    await opened.open()
    with pytest.raises(RuntimeError, match="already open"):
        await opened.open()
    await opened.create_user(_alice())
    await opened.close()
    await opened.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="not open"):
        await opened.get_user("alice")
    await opened.open()
    try:
        assert await opened.get_user("alice") == _alice()
    finally:
        await opened.close()


async def test_close_finishes_work_already_submitted(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    opened = SQLiteStore(path)
    await opened.open()
    await opened.create_user(_alice())
    ids = [f"dev{i:02d}" for i in range(50)]
    await asyncio.gather(*(opened.create_device(_dev(d)) for d in ids), opened.close())
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert [d.device for d in await reopened.list_devices("alice")] == ids
    finally:
        await reopened.close()


async def test_writes_wait_for_another_process_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    opened = SQLiteStore(path)
    await opened.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(opened.create_user(_alice()))
        await asyncio.sleep(0.2)
        assert not write.done()
        other.execute("COMMIT")
        await write
        assert await opened.get_user("alice") == _alice()
    finally:
        other.close()
        await opened.close()


def test_a_failed_migration_leaves_the_database_untouched() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    first = Migration(1, "0001_a.sql", "CREATE TABLE schema_version (version, applied);")
    broken = Migration(2, "0002_b.sql", "CREATE TABLE t (x);\nINSERT INTO nowhere VALUES (1);")
    assert apply_migrations(conn, [first]) == 1
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        apply_migrations(conn, [first, broken])
    assert current_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone() is None


def test_migration_statements_may_hold_semicolons() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    script = """
        CREATE TABLE schema_version (version, applied);  -- a comment; with a semicolon
        CREATE TABLE log (msg TEXT);
        CREATE TABLE item (x);
        CREATE TRIGGER item_log AFTER INSERT ON item BEGIN
            INSERT INTO log VALUES ('a;b');
            INSERT INTO log VALUES ('c');
        END;
        INSERT INTO item VALUES (1)
    """
    assert apply_migrations(conn, [Migration(1, "0001_x.sql", script)]) == 1
    assert apply_migrations(conn, [Migration(1, "0001_x.sql", script)]) == 1  # nothing pending
    assert conn.execute("SELECT msg FROM log ORDER BY rowid").fetchall() == [("a;b",), ("c",)]


async def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn, load_migrations()[:1]) == 1
    conn.execute("INSERT INTO users VALUES ('alice', 'h', 'admin', ?)", (_T0,))
    conn.close()
    upgraded = SQLiteStore(path)
    await upgraded.open()
    try:
        assert _versions(path) == [m.version for m in load_migrations()]
        assert await upgraded.get_user("alice") == _alice()
        token = AccessToken("alice", "t1", "t1", "", True, {"*": {"*": ["*"]}}, {}, None, _T0, _T0)
        await upgraded.create_access_token(token)
        assert await upgraded.list_access_tokens("alice") == [token]
    finally:
        await upgraded.close()


async def test_refresh_tokens_are_purged_in_chunks(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "PURGE_CHUNK", 3)
    await store.create_user(_alice())
    for i in range(8):  # 7 expired, 1 live
        expires = _T0 + (1 if i < 7 else 10_000)
        await store.add_refresh_token(RefreshToken(f"r{i}", "alice", f"f{i}", _T0, expires))
    assert await store.purge_refresh_tokens(_T0 + 1) == 7  # three jobs: 3, 3, then 1
    assert await store.use_refresh_token("r7", _T0 + 2) is not None


async def test_refresh_tokens_used_before_version_5_are_never_retried(tmp_path: Path) -> None:
    path = tmp_path / "roost.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert apply_migrations(conn, load_migrations()[:4]) == 4
    conn.execute("INSERT INTO users VALUES ('alice', 'h', 'admin', ?)", (_T0,))
    rows = [("old", 1), ("newer", 0)]  # "old" was exchanged for "newer" before the upgrade
    for jti, used in rows:
        conn.execute(
            "INSERT INTO refresh_tokens (jti, user_name, family, issued, expires, used)"
            " VALUES (?, 'alice', 'fam', ?, ?, ?)",
            (jti, _T0, _T0 + 10_000_000, used),
        )
    conn.close()
    upgraded = SQLiteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.use_refresh_token("old", _T0 + 1, 60_000) is None  # a reuse
        assert await upgraded.use_refresh_token("newer", _T0 + 1, 60_000) is None  # revoked
    finally:
        await upgraded.close()
