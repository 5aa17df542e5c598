"""A real nats-server for the tests: its own process on a free loopback port.

The binary is Debian's (``make nats``). Without it, the tests that need it skip with the reason;
in CI (``CI`` set) a skip fails the run (conftest.py), so there they always run.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from ports import free_port

from roost.bus.nats import nats_bus
from roost.wiring import BusFactory

BINARY_PATHS = ("/usr/sbin/nats-server", "/usr/bin/nats-server")
NO_BINARY = "nats-server is not installed (`make nats`, or apt-get install nats-server)"


def nats_binary() -> str | None:
    found = shutil.which("nats-server")
    if found:
        return found
    return next((p for p in BINARY_PATHS if Path(p).exists()), None)


class NatsServer:
    """One nats-server; ``stop()`` and ``start()`` again on the same port (a restart). With
    ``max_payload``, it takes no message longer than that (bytes; NATS's own default: 1 MB)."""

    def __init__(self, binary: str, work: Path, max_payload: int | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.work = work
        self.process: subprocess.Popen[bytes] | None = None
        self.options: list[str] = []
        if max_payload is not None:
            config = work / "nats-server.conf"
            config.write_text(f"max_payload: {max_payload}\n")
            self.options = ["-c", str(config)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.work / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), *self.options],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "nats-server did not start: " + (self.work / "nats-server.log").read_text()
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    with _started(tmp_path / "nats") as server:
        yield server


SMALL_PAYLOAD = 4096


@pytest.fixture
def small_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server taking no message over SMALL_PAYLOAD bytes."""
    with _started(tmp_path / "small-nats", SMALL_PAYLOAD) as server:
        yield server


@contextlib.contextmanager
def _started(work: Path, max_payload: int | None = None) -> Iterator[NatsServer]:
    binary = nats_binary()
    if binary is None:
        pytest.skip(NO_BINARY)
    work.mkdir()
    server = NatsServer(binary, work, max_payload)
    server.start()
    try:
        yield server
    finally:
        server.stop()


_SESSION_SERVER = pytest.StashKey[NatsServer]()


def session_bus(config: pytest.Config) -> BusFactory:
    """The NATS bus on one nats-server for the whole run (``pytest --bus=nats``), started at
    first use and stopped at the end."""
    server = config.stash.get(_SESSION_SERVER, None)
    if server is None:
        binary = nats_binary()
        if binary is None:
            pytest.skip(
                "nats-server is not installed (`make nats`, or apt-get install nats-server)"
            )
        server = NatsServer(binary, Path(tempfile.mkdtemp(prefix="roost-nats-")))
        server.start()
        config.stash[_SESSION_SERVER] = server
        config.add_cleanup(server.stop)
    return partial(nats_bus, url=server.url)
