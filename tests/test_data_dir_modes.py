"""Issue 14, item 8: everything Roost writes in its data dir is owner-only from the first write
(the dir 0700; the database, its -wal and -shm, the keys 0600), for `roost serve` and the admin
commands alike, whatever the umask. Real processes, run with the common umask 022."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from ports import free_ports
from test_cli import wait_healthy


def roost(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "roost.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: os.umask(0o022),  # what a login shell usually has
    )


def modes(data_dir: Path) -> dict[str, int]:
    """The permission bits of the data dir ("") and of everything in it."""
    found = {"": stat.S_IMODE(data_dir.stat().st_mode)}
    for path in data_dir.rglob("*"):
        found[str(path.relative_to(data_dir))] = stat.S_IMODE(path.stat().st_mode)
    return found


def assert_owner_only(data_dir: Path) -> None:
    for name, mode in modes(data_dir).items():
        private = 0o700 if (data_dir / name).is_dir() else 0o600
        assert mode == private, f"{name or 'the data dir'} has mode {oct(mode)}"


def test_a_server_writes_owner_only_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    http_port, device_port, iotmp_port = free_ports(3)
    server = roost(
        "serve",
        *("--data-dir", str(data_dir), "--admin-password", "first-admin-pw"),
        *("--http-port", str(http_port), "--device-port", str(device_port)),
        *("--iotmp-port", str(iotmp_port)),
    )
    try:
        wait_healthy(http_port, server)
        written = set(modes(data_dir))
        assert {"roost.db", "roost.db-wal", "roost.db-shm", "jwt.key", "pepper.key"} <= written
        assert_owner_only(data_dir)
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=20)
    assert server.returncode == 0, output
    assert_owner_only(data_dir)

    added = roost("user", "add", "bob", "--password", "bob-password", "--data-dir", str(data_dir))
    output, _ = added.communicate(timeout=60)
    assert added.returncode == 0, output
    assert_owner_only(data_dir)


def test_an_admin_command_on_a_fresh_dir_leaves_nothing_open(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    added = roost("user", "add", "bob", "--password", "bob-password", "--data-dir", str(data_dir))
    output, _ = added.communicate(timeout=60)
    # refused (the admin commands may want a store `roost serve` made) or done: either way,
    # whatever it left behind is the owner's only
    if data_dir.exists():
        assert_owner_only(data_dir)
    else:
        assert added.returncode != 0, output


def test_an_existing_open_data_dir_is_closed_at_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    http_port, device_port, iotmp_port = free_ports(3)
    server = roost(
        "serve",
        *("--data-dir", str(data_dir), "--admin-password", "first-admin-pw"),
        *("--http-port", str(http_port), "--device-port", str(device_port)),
        *("--iotmp-port", str(iotmp_port)),
    )
    try:
        wait_healthy(http_port, server)
        assert_owner_only(data_dir)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=20)
