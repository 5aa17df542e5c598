"""`roost serve` and `roost user add` as a user runs them: real processes, real ports."""

from __future__ import annotations

import asyncio
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
from ports import free_ports

from roost.config import SETTING_HELP, default_text, env_name, setting_names
from roost.store.sqlite import DATABASE_FILE, SQLiteStore


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
        "serve",
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


def make_store(data_dir: Path) -> None:
    """A data dir holding an empty store, as `roost user ...` needs one."""

    async def make() -> None:
        store = SQLiteStore(data_dir / DATABASE_FILE)
        await store.open()
        await store.close()

    asyncio.run(make())


def test_user_add(tmp_path: Path) -> None:
    make_store(tmp_path / "data")
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
        (["--http-port", "eighty"], "setting 'http_port': 'eighty' must be 0-65535"),
        (
            ["--keepalive-timeout", "-1"],
            "setting 'keepalive_timeout': '-1' must be a number above 0",
        ),
        (["--max-frame-bytes", "-1"], "setting 'max_frame_bytes': '-1' must be a whole number"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("--data-dir", str(tmp_path), *args, "serve")
    assert result.returncode == 2
    assert message in result.stderr


def roost_help(*args: str) -> str:
    """The help text of ``roost *args --help``, unwrapped (one space between words)."""
    result = subprocess.run(
        [sys.executable, "-m", "roost", *args, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "COLUMNS": "2000"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return " ".join(result.stdout.split())


def test_serve_help_gives_each_flag_its_meaning_and_default() -> None:
    text = roost_help("serve")
    for name in setting_names():
        flag = "--" + name.replace("_", "-")
        assert re.search(
            rf"{flag}( [A-Z_]+)? {re.escape(SETTING_HELP[name])} \(env ROOST_{name.upper()}"
            rf"(=1)?; default: {re.escape(default_text(name))}\)",
            text,
        ), flag
    assert "--config CONFIG TOML file of settings (env ROOST_CONFIG; default: none)" in text


def test_user_add_help_shows_its_own_options() -> None:
    text = roost_help("user", "add")
    assert "usage: roost user add" in text
    assert "--password PASSWORD the password (6 to 72 characters; default: asked for twice" in text
    assert "--admin make the user an administrator" in text
    assert "--data-dir DATA_DIR directory of the database" in text
    assert "--http-port" not in text and "--tls-cert" not in text


def test_bare_roost_prints_help_and_serves_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "roost"],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
        cwd=tmp_path,
        env={
            **os.environ,
            "ROOST_HTTP_PORT": "0",
            "ROOST_DEVICE_PORT": "0",
            "ROOST_IOTMP_PORT": "0",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: roost")
    assert "roost serve --help" in " ".join(result.stdout.split())
    assert list(tmp_path.iterdir()) == []  # no data dir made
    assert " ".join(roost_help().split()) == " ".join(result.stdout.split())


def readme_settings() -> dict[str, tuple[str, str, str]]:
    """The README's settings table: setting -> (env var, default, meaning), backticks dropped."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        flags = re.findall(r"`--([a-z-]+)`", cells[0])
        if len(cells) != 4 or not flags:
            continue
        envs = re.findall(r"`(ROOST_[A-Z_]+)(?:=1)?`", cells[1])
        defaults = [cells[2]] if len(flags) == 1 else cells[2].split(", ")
        if len(defaults) == 1:
            defaults *= len(flags)
        assert len(envs) == len(defaults) == len(flags), line
        for flag, env, default in zip(flags, envs, defaults, strict=True):
            name = flag.replace("-", "_")
            assert name not in rows, f"{name} twice in the README"
            rows[name] = (env, default.replace("`", ""), cells[3].replace("`", ""))
    return rows


def test_readme_settings_table_says_what_help_says() -> None:
    """One source of truth: roost.config.SETTING_HELP and default_text, which --help shows."""
    rows = readme_settings()
    assert sorted(rows) == sorted(setting_names())
    assert sorted(SETTING_HELP) == sorted(setting_names())
    for name, (env, default, meaning) in rows.items():
        assert (env, default, meaning) == (env_name(name), default_text(name), SETTING_HELP[name])
