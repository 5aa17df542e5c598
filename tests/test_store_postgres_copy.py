"""``roost migrate-to-postgres``: a SQLite data dir copied into PostgreSQL reads back the same
through the Store, all of it or nothing; a person's mistakes are one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from roost.errors import Conflict, RoostError
from roost.store import postgres_copy
from roost.store.aggregate import AggregateQuery, period
from roost.store.base import (
    AccessToken,
    Bucket,
    Device,
    DeviceProperty,
    DeviceToken,
    Endpoint,
    RefreshToken,
    Store,
    User,
)
from roost.store.postgres import PostgresStore
from roost.store.sqlite import SQLiteStore

_T0 = 1_700_000_000_000
_POINTS = 25


async def _fill(data_dir: Path) -> None:
    store = SQLiteStore(data_dir / "roost.db")
    await store.open()
    try:
        await store.create_user(User("alice", "h1", "admin", _T0))
        await store.create_user(User("bob", "h2", "user", _T0 + 1, enabled=False))
        await store.create_device(
            Device("alice", "dev1", "Dev 1", "d", "Generic", "c", True, _T0, _T0 + 5, _T0 + 9)
        )
        await store.create_device(
            Device("alice", "dev2", "Dev 2", "", "HTTP", None, False, _T0, _T0, None)
        )
        await store.create_device_token(
            DeviceToken("tok1", "alice", "dev1", "t", ("temp", "led"), None, _T0)
        )
        await store.create_device_token(DeviceToken("tok2", "alice", "dev1", "u", None, 7, _T0))
        await store.create_access_token(
            AccessToken("alice", "a1", "A", "", True, {"Device": "*"}, {}, None, _T0, _T0)
        )
        await store.add_refresh_token(RefreshToken("r1", "alice", "r1", _T0, _T0 + 10**9))
        await store.add_refresh_token(
            RefreshToken("r2", "alice", "r1", _T0, _T0 + 10**9, parent="r1")
        )
        assert await store.use_refresh_token("r1", _T0 + 1) is not None
        await store.create_device_property(
            DeviceProperty("alice", "dev1", "cfg", "n", "", "", {"big": 2**64, "f": 1.5}, _T0, _T0),
            10,
        )
        bucket = Bucket(
            "alice",
            "temp",
            "T",
            "",
            True,
            {"source": "device", "device": "dev1"},
            {"period": 1, "unit": "days"},
            _T0,
            _T0,
        )
        await store.create_bucket(bucket)
        await store.write_points(
            "alice", "temp", [(_T0 + i * 60_000, {"t": i, "h": i / 2}) for i in range(_POINTS)]
        )
        await store.create_endpoint(
            Endpoint("alice", "hook", "H", "", True, "http_request", {"url": "http://x"}, _T0, _T0)
        )
    finally:
        await store.close()


async def _everything(store: Store) -> list[object]:
    hourly = AggregateQuery(period("1h"), "mean")
    return [
        await store.list_users(),
        await store.list_devices("alice"),
        await store.list_device_tokens("alice", "dev1"),
        await store.list_access_tokens("alice"),
        await store.list_device_properties("alice", "dev1"),
        await store.list_buckets("alice"),
        await store.read_points("alice", "temp", None, None, 1000),
        await store.aggregate_points("alice", "temp", hourly),
        await store.list_endpoints("alice"),
        await store.use_refresh_token("r2", _T0 + 2),  # r1's successor: live
        await store.use_refresh_token("r1", _T0 + 2),  # used: a reuse
    ]


async def _read_sqlite(data_dir: Path) -> list[object]:
    store = SQLiteStore(data_dir / "roost.db")
    await store.open()
    try:
        return await _everything(store)
    finally:
        await store.close()


async def _read_postgres(url: str) -> list[object]:
    store = PostgresStore(url)
    await store.open()
    try:
        return await _everything(store)
    finally:
        await store.close()


async def test_a_copy_reads_back_the_same_and_points_go_in_batches(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fill(tmp_path)
    monkeypatch.setattr(postgres_copy, "BATCH", 4)
    seen: list[tuple[str, int]] = []
    copied = await postgres_copy.copy_to_postgres(
        tmp_path / "roost.db", postgres_url, lambda table, rows: seen.append((table, rows))
    )
    assert copied["bucket_points"] == _POINTS and copied["users"] == 2
    assert [rows for table, rows in seen if table == "bucket_points"] == [4, 8, 12, 16, 20, 24, 25]
    on_postgres = await _read_postgres(postgres_url)
    assert on_postgres == await _read_sqlite(tmp_path)
    assert on_postgres[-2] is not None and on_postgres[-1] is None  # not vacuous

    with pytest.raises(Conflict, match="not empty"):  # a second copy would mix two
        await postgres_copy.copy_to_postgres(tmp_path / "roost.db", postgres_url)


async def test_a_failed_copy_leaves_the_target_empty(tmp_path: Path, postgres_url: str) -> None:
    await _fill(tmp_path)
    migrated = PostgresStore(postgres_url)
    await migrated.open()
    await migrated.close()
    conn = await asyncpg.connect(postgres_url)
    try:  # a constraint PostgreSQL has and SQLite had not: the endpoints, copied last, fail
        await conn.execute("ALTER TABLE endpoints ADD CHECK (type <> 'http_request')")
    finally:
        await conn.close()
    with pytest.raises(RoostError, match="a row of endpoints cannot be copied"):
        await postgres_copy.copy_to_postgres(tmp_path / "roost.db", postgres_url)
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert await store.count_users() == 0
        assert await store.read_points("alice", "temp", None, None, 10) == []
    finally:
        await store.close()


def _roost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_the_command_copies_and_says_so_and_mistakes_are_one_line(
    tmp_path: Path, postgres_url: str
) -> None:
    asyncio.run(_fill(tmp_path))
    done = _roost(
        "migrate-to-postgres", "--data-dir", str(tmp_path), "--database-url", postgres_url
    )
    assert done.returncode == 0, done.stderr
    assert f"{_POINTS} bucket_points" in done.stdout and "2 users" in done.stdout

    again = _roost(
        "migrate-to-postgres", "--data-dir", str(tmp_path), "--database-url", postgres_url
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        "roost: the PostgreSQL database is not empty (users has rows)"
    ]
    no_url = _roost("migrate-to-postgres", "--data-dir", str(tmp_path))
    assert no_url.returncode == 1
    assert len(no_url.stderr.strip().splitlines()) == 1 and "--database-url" in no_url.stderr
    missing = _roost(
        "migrate-to-postgres", "--data-dir", str(tmp_path / "nope"), "--database-url", postgres_url
    )
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    bad_url = _roost("migrate-to-postgres", "--data-dir", str(tmp_path), "--database-url", "x://y")
    assert bad_url.returncode == 2 and "postgresql://" in bad_url.stderr
    unreachable = _roost(
        "migrate-to-postgres",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        "postgresql://roost:roost@127.0.0.1:1/none",
    )
    assert unreachable.returncode == 1, unreachable.stderr
    assert unreachable.stderr.startswith("roost: PostgreSQL cannot be reached")
    assert len(unreachable.stderr.strip().splitlines()) == 1
    parts = urlsplit(postgres_url)
    netloc = f"{parts.username}:wrong-password@{parts.hostname}:{parts.port or 5432}"
    wrong = urlunsplit(parts._replace(netloc=netloc))
    refused = _roost("migrate-to-postgres", "--data-dir", str(tmp_path), "--database-url", wrong)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith("roost: PostgreSQL refused the connection")
    assert "wrong-password" not in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_user_commands_work_on_the_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    url = ("--database-url", postgres_url)
    added = _roost("user", "add", "carol", "--password", "secret-1", *url)
    assert added.returncode == 0, added.stderr
    logout = _roost("user", "logout", "carol", *url)
    assert (logout.returncode, logout.stdout.strip()) == (
        0,
        "revoked 0 refresh token(s) of 'carol'",
    )
    assert _roost("user", "logout", "nobody", *url).stderr.strip() == "roost: no user 'nobody'"
    backup = _roost("backup", "--data-dir", str(tmp_path), *url, str(tmp_path / "b"))
    assert backup.returncode == 1 and "pg_dump" in backup.stderr

    async def read() -> User | None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            return await store.get_user("carol")
        finally:
            await store.close()

    carol = asyncio.run(read())
    assert carol is not None and carol.role == "user"
