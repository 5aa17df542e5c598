"""A person's mistakes in starting or administering Roost: each ends the command with a non-zero
status and ONE line on stderr naming the thing at fault, never a traceback. Every case runs the
real command in a subprocess, as a person would."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

from roost.device import Device
from roost.store.sqlite import DATABASE_FILE, SQLiteStore

ZERO_PORTS = {
    "http_port": "0",
    "device_port": "0",
    "iotmp_port": "0",
    "https_port": "0",
    "device_tls_port": "0",
    "iotmp_tls_port": "0",
}


def clean_env(**settings: str) -> dict[str, str]:
    """The test's environment without any ROOST_* of its own, plus ``settings`` as ROOST_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
    env.update({"ROOST_" + name.upper(): value for name, value in settings.items()})
    return env


def roost(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,  # no terminal
        env=clean_env(**settings),
        check=False,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line on stderr of a command that failed as it should."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("roost: ")
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir holding a store, as `roost serve` leaves it."""

    async def make() -> None:
        store = SQLiteStore(tmp_path / "data" / DATABASE_FILE)
        await store.open()
        await store.close()

    asyncio.run(make())
    return tmp_path / "data"


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    "setting",
    ["http_port", "device_port", "iotmp_port", "https_port", "device_tls_port", "iotmp_tls_port"],
)
def test_port_in_use_is_named(tmp_path: Path, held_port: int, setting: str) -> None:
    ports = {**ZERO_PORTS, setting: str(held_port)}
    result = roost("serve", "--tls-self-signed", data_dir=str(tmp_path / "data"), **ports)
    assert one_line(result) == f"roost: {setting} {held_port} is already in use"


@pytest.mark.parametrize(
    ("args", "settings", "setting", "value"),
    [
        (["--http-port", "99999"], {}, "http_port", "99999"),
        ([], {"device_port": "-1"}, "device_port", "-1"),
        (["--iotmp-tls-port", "65536"], {}, "iotmp_tls_port", "65536"),
    ],
)
def test_port_out_of_range_is_named(
    tmp_path: Path, args: list[str], settings: dict[str, str], setting: str, value: str
) -> None:
    result = roost("serve", "--data-dir", str(tmp_path), *args, **settings)
    assert (
        one_line(result) == f"roost: setting {setting!r}: {value!r} must be 0-65535 (a port number)"
    )


def test_unknown_log_level_lists_the_valid_ones(tmp_path: Path) -> None:
    line = one_line(roost("serve", "--data-dir", str(tmp_path), "--log-level", "verbose"))
    assert "'log_level': 'verbose'" in line
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in line


def test_data_dir_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = roost("serve", data_dir=str(tmp_path / "file" / "data"), **ZERO_PORTS)
    shown = str(tmp_path / "file" / "data")
    assert one_line(result) == f"roost: data dir {shown!r} cannot be created: Not a directory"
    result = roost("serve", data_dir=str(tmp_path / "file"), **ZERO_PORTS)
    assert one_line(result) == f"roost: data dir {str(tmp_path / 'file')!r} is not a directory"


@pytest.mark.parametrize("password", ["", "short"])
def test_first_admin_password_must_be_usable(tmp_path: Path, password: str) -> None:
    result = roost("serve", data_dir=str(tmp_path / "data"), admin_password=password, **ZERO_PORTS)
    line = one_line(result)
    assert line.startswith("roost: setting 'admin_password' must have 6 to 72 characters")
    if password:
        assert password not in line


@pytest.mark.parametrize(
    "command",
    [
        ["user", "add", "carol", "--password", "carol-password"],
        ["user", "passwd", "carol", "--password", "carol-password"],
        ["user", "logout", "carol"],
    ],
)
def test_user_commands_do_not_create_a_store(tmp_path: Path, command: list[str]) -> None:
    misspelt = tmp_path / "roost-dat"
    line = one_line(roost(*command, "--data-dir", str(misspelt)))
    assert f"data dir {str(misspelt)!r} does not exist" in line
    assert "roost serve" in line
    assert not misspelt.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line(roost(*command, "--data-dir", str(empty)))
    assert f"data dir {str(empty)!r} holds no Roost database" in line
    assert list(empty.iterdir()) == []


def test_user_add_without_terminal_says_how_to_give_the_password(data_dir: Path) -> None:
    line = one_line(roost("user", "add", "carol", "--data-dir", str(data_dir)))
    assert "no terminal" in line and "'carol'" in line and "--password" in line


def test_user_add_password_too_short(data_dir: Path) -> None:
    result = roost("user", "add", "carol", "--password", "abc", "--data-dir", str(data_dir))
    assert one_line(result) == "roost: the password must have 6 to 72 characters"


def on_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run roost with a terminal of its own, typing ``answers`` at its prompts, one per prompt;
    returns the exit status and everything it wrote to the terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.execve(sys.executable, [sys.executable, "-m", "roost", *args], clean_env())
    output = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # the child is gone
                    break
                if not chunk:
                    break
                output += chunk
                if chunk.rstrip().endswith(b":") and answers:
                    os.write(fd, answers.pop(0).encode() + b"\n")
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_prompted_password_is_asked_twice(data_dir: Path) -> None:
    status, output = on_terminal(
        ["user", "add", "carol", "--data-dir", str(data_dir)], ["carol-password", "carol-passw0rd"]
    )
    assert status != 0, output
    assert "Traceback" not in output
    assert output.count("Password for carol") == 2
    assert output.splitlines()[-1] == "roost: the two passwords differ; nothing was changed"

    status, output = on_terminal(
        ["user", "add", "carol", "--data-dir", str(data_dir)], ["carol-password", "carol-password"]
    )
    assert status == 0, output
    assert "added user 'carol'" in output


async def test_device_sdk_warns_when_it_cannot_connect(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # a loopback port with nothing listening
    device = Device("alice", "dev1", "secret1", host="127.0.0.1", port=port, reconnect_delay=5)
    caplog.set_level(logging.WARNING, logger="roost")
    await device.start()
    try:
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await device.stop()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"127.0.0.1 port {port}" in record.getMessage()
    assert "alice/dev1" in record.getMessage()
