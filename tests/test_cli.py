"""`roost serve` and `roost user add` as a user runs them: real processes, real ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all held open while they are chosen, so none comes twice."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def roost(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "roost.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_healthy(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/server/healthcheck").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def test_first_start_creates_admin_key_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    http_port, device_port, iotmp_port = free_ports(3)
    process = roost(
        "serve",
        env={
            "ROOST_DATA_DIR": str(data_dir),
            "ROOST_HTTP_PORT": str(http_port),
            "ROOST_DEVICE_PORT": str(device_port),
            "ROOST_IOTMP_PORT": str(iotmp_port),
        },
    )
    try:
        wait_healthy(http_port, process)
        version = httpx.get(f"http://127.0.0.1:{http_port}/v1/server/version").json()
        assert version["version"]
        with socket.create_connection(("127.0.0.1", device_port)):
            pass  # the device port listens too
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    match = re.search(r"created admin user 'admin' with password: (\S+)", output)
    assert match, output
    password = match.group(1)
    assert output.count(password) == 1  # printed once, never logged again
    assert f"http port {http_port}" in output and f"legacy port {device_port}" in output
    assert f"iotmp port {iotmp_port}" in output
    assert str(data_dir.resolve()) in output
    key = data_dir / "jwt.key"
    for secret in (key, data_dir / "pepper.key"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(bytes.fromhex(secret.read_text())) == 64
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700

    # second start: same key, no new admin, the printed password works
    key_before = key.read_text()
    process = roost(
        "--data-dir",
        str(data_dir),
        "--http-port",
        str(http_port),
        "--device-port",
        str(device_port),
        "--iotmp-port",
        str(iotmp_port),
    )
    try:
        wait_healthy(http_port, process)
        response = httpx.post(
            f"http://127.0.0.1:{http_port}/oauth/token",
            data={"grant_type": "password", "username": "admin", "password": password},
        )
        assert response.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "created admin user" not in output
    assert key.read_text() == key_before


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_admin_from_environment_and_user_add(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    add_carol = ("--data-dir", data_dir, "user", "add", "carol", "--password", "carol-password")
    added = run_cli(*add_carol)
    assert added.returncode == 0, added.stderr
    again = run_cli(*add_carol)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    bad = run_cli("--data-dir", data_dir, "user", "add", "bad name", "--password", "carol-password")
    assert bad.returncode != 0
    assert "invalid user name" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http-port", "eighty"], "setting 'http_port': 'eighty' is not a valid int"),
        (["--keepalive-timeout", "-1"], "setting 'keepalive_timeout': '-1' is not a valid float"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("--data-dir", str(tmp_path), *args, "serve")
    assert result.returncode == 2
    assert message in result.stderr
