"""`roost backup` and `roost restore` as a person runs them: real processes, real files, a server
that keeps writing while the backup is taken."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ports import free_ports
from test_cli import wait_healthy
from test_startup_errors import clean_env, one_line

from roost.auth.keys import JWT_KEY_FILE, PEPPER_FILE, load_or_create_key
from roost.device import Device
from roost.store.sqlite import DATABASE_FILE, SQLiteStore

PASSWORD = "backup-admin-pw"
SECRETS = (DATABASE_FILE, JWT_KEY_FILE, PEPPER_FILE)


def roost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        check=False,
        timeout=60,
    )


class Server:
    """`roost serve` on ``data_dir``, on free ports."""

    def __init__(self, data_dir: Path) -> None:
        self.http_port, self.device_port, iotmp_port = free_ports(3)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roost", "serve", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(
                admin_password=PASSWORD,
                http_port=str(self.http_port),
                device_port=str(self.device_port),
                iotmp_port=str(iotmp_port),
            ),
        )
        self.url = f"http://127.0.0.1:{self.http_port}"
        wait_healthy(self.http_port, self.process)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=20)
        assert self.process.returncode == 0, output


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data")
    yield running
    if running.process.poll() is None:
        running.stop()


def login(client: httpx.Client) -> str:
    response = client.post(
        "/oauth/token", data={"grant_type": "password", "username": "admin", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def device_names(client: httpx.Client, token: str) -> set[str]:
    response = client.get("/v1/users/admin/devices", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {device["device"] for device in response.json()}


def bucket_ts(client: httpx.Client, token: str) -> list[int]:
    """Every ts of bucket b1, paged as the clients page (ascending, past the last ts)."""
    stored: list[int] = []
    while True:
        page = client.get(
            "/v1/users/admin/buckets/b1/data",
            params={"items": 1000, "sort": "asc", "min_ts": stored[-1] + 1 if stored else 0},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert page.status_code == 200, page.text
        stored += [point["ts"] for point in page.json()]
        if len(page.json()) < 1000:
            return stored


def device_connects(port: int) -> None:
    async def connect() -> None:
        device = Device("admin", "dev1", "secret1", port=port, reconnect_delay=0.2)
        await device.start()
        try:
            await device.wait_connected(10)
        finally:
            await device.stop()

    asyncio.run(connect())


def test_backup_under_writes_restores_a_working_server(tmp_path: Path, server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        session = login(client)
        auth = {"Authorization": f"Bearer {session}"}
        made = client.post(
            "/v1/users/admin/devices",
            json={"device": "dev1", "credentials": "secret1"},
            headers=auth,
        )
        assert made.status_code == 200, made.text
        made = client.post(
            "/v1/users/admin/tokens",
            json={"token": "reader", "allow": {"Device": {"*": ["ListDevices"]}}},
            headers=auth,
        )
        assert made.status_code == 200, made.text
        reader = made.json()["access_token"]
        made = client.post("/v1/users/admin/buckets", json={"bucket": "b1"}, headers=auth)
        assert made.status_code == 200, made.text

        # a writer keeps creating devices and writing a bucket point for each; those it saw
        # acknowledged are recorded in order
        acknowledged: list[str] = []
        points: list[int] = []
        stop = threading.Event()

        def write() -> None:
            with httpx.Client(base_url=server.url, headers=auth) as writer:
                for i in range(100_000):
                    if stop.is_set():
                        return
                    name = f"w{i}"
                    body = {"device": name, "credentials": "secret1"}
                    if writer.post("/v1/users/admin/devices", json=body).status_code == 200:
                        acknowledged.append(name)
                    point = {"ts": 1_000_000 + i, "n": i}
                    if writer.post("/v1/users/admin/buckets/b1/data", json=point).is_success:
                        points.append(1_000_000 + i)

        thread = threading.Thread(target=write)
        thread.start()
        try:
            while len(acknowledged) < 20:
                assert thread.is_alive()
                stop.wait(0.01)
            before = list(acknowledged)  # acknowledged before the backup starts
            points_before = list(points)
            backup = tmp_path / "roost.backup"
            result = roost("backup", "--data-dir", str(tmp_path / "data"), str(backup))
            assert result.returncode == 0, result.stderr
            during = len(acknowledged)
            while len(acknowledged) < during + 5:  # the server kept writing after it
                assert thread.is_alive()
                stop.wait(0.01)
        finally:
            stop.set()
            thread.join()
    server.stop()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".roost-backup")]

    restored = tmp_path / "restored"
    result = roost("restore", "--data-dir", str(restored), str(backup))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(restored.stat().st_mode) == 0o700
    assert sorted(p.name for p in restored.iterdir()) == sorted(SECRETS)
    for name in SECRETS:
        assert stat.S_IMODE((restored / name).stat().st_mode) == 0o600
        if name != DATABASE_FILE:  # the keys come back byte for byte
            assert (restored / name).read_bytes() == (tmp_path / "data" / name).read_bytes()

    again = Server(restored)
    try:
        with httpx.Client(base_url=again.url) as client:
            login(client)  # the admin's password
            names = device_names(client, session)  # a login JWT issued before the backup
            assert {"dev1", *before} <= names  # every write acknowledged before it began
            assert names - {"dev1"} <= set(acknowledged)
            assert device_names(client, reader) == names  # an access token made before it
            stored = bucket_ts(client, session)
            assert set(points_before) <= set(stored) <= set(points)  # every point acknowledged
        device_connects(again.device_port)  # the device's credentials (the pepper)
    finally:
        again.stop()


@pytest.fixture(scope="module")
def backup_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup of a data dir `roost serve` made, taken with the server stopped."""
    folder = tmp_path_factory.mktemp("stopped")

    async def make() -> None:
        store = SQLiteStore(folder / "data" / DATABASE_FILE)
        await store.open()
        await store.close()

    asyncio.run(make())
    for name in (JWT_KEY_FILE, PEPPER_FILE):
        load_or_create_key(folder / "data", name)
    result = roost("backup", "--data-dir", str(folder / "data"), str(folder / "b.tgz"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return folder / "b.tgz"


def test_restore_refuses_a_data_dir_that_is_not_empty(tmp_path: Path, backup_file: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("mine")
    result = roost("restore", "--data-dir", str(data_dir), str(backup_file))
    assert "is not empty" in one_line(result) and result.returncode == 2
    (data_dir / "notes.txt").unlink()
    (data_dir / DATABASE_FILE).write_bytes(b"")
    result = roost("restore", "--data-dir", str(data_dir), str(backup_file))
    assert "is not empty" in one_line(result) and result.returncode == 2
    assert [p.name for p in data_dir.iterdir()] == [DATABASE_FILE]


def rewritten(backup_file: Path, target: Path, **manifest: object) -> Path:
    """A copy of ``backup_file`` whose manifest has ``manifest`` over its own fields."""
    with tarfile.open(backup_file, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "roost-backup.json":
                data = json.dumps({**json.loads(data), **manifest}).encode()
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return target


def foreign(backup_file: Path, target: Path) -> Path:
    target.write_text("hello\n")
    return target


def truncated(backup_file: Path, target: Path) -> Path:
    target.write_bytes(backup_file.read_bytes()[:400])
    return target


def damaged(backup_file: Path, target: Path) -> Path:
    data = bytearray(backup_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (foreign, "is not a Roost backup"),
        (truncated, "backup"),
        (damaged, "damaged"),
        (lambda b, t: rewritten(b, t, format="something-else"), "is not a Roost backup"),
        (lambda b, t: rewritten(b, t, schema_version=9999), "newer than this Roost knows"),
        (lambda b, t: rewritten(b, t, format_version=2), "format this Roost does not know"),
        (lambda b, t: rewritten(b, t, sha256={}), "does not match its digest"),
    ],
    ids=[
        "foreign",
        "truncated",
        "corrupt",
        "other-format",
        "newer-schema",
        "newer-format",
        "digest",
    ],
)
def test_restore_refuses_what_is_not_a_backup_it_knows(
    tmp_path: Path, backup_file: Path, make: object, words: str
) -> None:
    bad = make(backup_file, tmp_path / "bad.tgz")  # type: ignore[operator]
    data_dir = tmp_path / "data"
    result = roost("restore", "--data-dir", str(data_dir), str(bad))
    assert words in one_line(result)
    assert not data_dir.exists()  # a failed restore leaves nothing behind


def test_backup_needs_a_roost_data_dir(tmp_path: Path) -> None:
    result = roost("backup", "--data-dir", str(tmp_path / "nowhere"), str(tmp_path / "b.tgz"))
    assert "does not exist" in one_line(result)
    assert not (tmp_path / "b.tgz").exists()


def test_backup_to_a_place_it_cannot_write_is_one_line(tmp_path: Path, backup_file: Path) -> None:
    data_dir = tmp_path / "data"
    assert roost("restore", "--data-dir", str(data_dir), str(backup_file)).returncode == 0
    result = roost("backup", "--data-dir", str(data_dir), str(tmp_path / "no" / "b.tgz"))
    assert "does not exist" in one_line(result)
    result = roost("backup", "--data-dir", str(data_dir), str(tmp_path))
    assert "is a directory" in one_line(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary file left


def test_restore_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = roost("restore", "--data-dir", str(tmp_path / "data"), str(tmp_path / "none.tgz"))
    assert "does not exist" in one_line(result)
    assert not (tmp_path / "data").exists()


def test_help_describes_both_commands() -> None:
    for command in ("backup", "restore"):
        result = roost(command, "--help")
        assert result.returncode == 0
        assert "--data-dir" in result.stdout and "FILE" in result.stdout
