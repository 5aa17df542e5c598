"""`roost serve` in its own process with few open files, and floods of connections from other
loopback addresses: what the descriptor-exhaustion tests share.

The server is a subprocess so that its open-file limit (``FD_LIMIT``) is its own; its timeouts
are set long by the callers, so that only the limits keep it answering. Attackers are plain
sockets bound to 127.0.0.2, 127.0.0.3, ... (the whole 127/8 is loopback on Linux).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from conftest import ADMIN_PASSWORD

FD_LIMIT = 256
PORTS = ("HTTP", "HTTPS", "DEVICE", "IOTMP", "DEVICE_TLS", "IOTMP_TLS")


def _few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@contextlib.contextmanager
def few_files_server(tmp_path: Path, **settings: str) -> Iterator[tuple[Path, dict[str, int]]]:
    """`roost serve` with at most ``FD_LIMIT`` open files and ``settings`` (``auth_timeout="60"``
    becomes ``ROOST_AUTH_TIMEOUT=60``): its data dir and its ports by listener name. The server's
    output is printed when it stops, so a failing test shows it."""
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ROOST_DATA_DIR": str(data),
        "ROOST_ADMIN_PASSWORD": ADMIN_PASSWORD,
        **{f"ROOST_{port}_PORT": "0" for port in PORTS},
        **{f"ROOST_{name.upper()}": value for name, value in settings.items()},
    }
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "roost.cli", "serve"],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_few_files,
        )
    try:
        yield data, _listening_ports(log, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text())


def _listening_ports(log: Path, process: subprocess.Popen[bytes]) -> dict[str, int]:
    """Every port the server chose, by listener name, from its "listening on" line."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        line = next((line for line in log.read_text().splitlines() if "listening on" in line), "")
        if line:
            return {name: int(port) for name, port in re.findall(r"(\w+) port (\d+)", line)}
        time.sleep(0.05)
    raise AssertionError("the server did not start: " + log.read_text())


def flood(
    port: int, addresses: int, per_address: int, first: Callable[[int], bytes] = lambda n: b""
) -> list[socket.socket]:
    """``addresses * per_address`` connections to ``port`` from the attacking addresses in turn;
    the n-th sends ``first(n)`` (nothing when empty) and then waits."""
    opened: list[socket.socket] = []
    for n in range(addresses * per_address):
        sock = socket.socket()
        sock.settimeout(0.2)
        opened.append(sock)
        try:
            sock.bind((f"127.0.0.{2 + n % addresses}", 0))
            sock.connect(("127.0.0.1", port))
            if data := first(n):
                sock.send(data)
        except OSError:
            pass  # refused, reset or queue full: the server is not keeping up, so much the better
    return opened
