"""The tests' own free ports (ports.py): distinct, free, and out of the kernel's ephemeral range,
where client sockets could take them before the server binds."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import ports
import pytest
from ports import EPHEMERAL, free_ports


@pytest.mark.skipif(not EPHEMERAL.exists(), reason=f"no {EPHEMERAL} (not Linux)")
def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low = int(EPHEMERAL.read_text().split()[0])
    ports = free_ports(20) + free_ports(20)  # not twice, across calls either
    assert len(set(ports)) == 40
    assert all(1024 <= port < low for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_ports(1)[0]))
        listening.listen()
        taken = listening.getsockname()[1]
        monkeypatch.setattr(ports, "_given", set())  # as if another process had handed it out
        offered = iter([taken, taken])
        choice = random.choice
        monkeypatch.setattr(random, "choice", lambda pool: next(offered, None) or choice(pool))
        assert taken not in free_ports(2)
        assert next(offered, None) is None  # it was offered, twice


@pytest.mark.parametrize(
    ("ephemeral", "worker", "workers", "within"),
    [
        ("32768\t60999", "gw1", "3", range(24768, 28768)),
        ("32768\t60999", "gw4", "3", range(24768, 28768)),  # replacing a dead worker: its slice
        ("10000\t65535", "gw0", "2", range(1024, 5512)),
        ("1024\t60999", "gw0", "1", range(61000, 65536)),  # no room below: above the range
    ],
)
def test_each_process_has_a_slice_of_its_own_outside_the_range(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ephemeral: str,
    worker: str,
    workers: str,
    within: range,
) -> None:
    configured = tmp_path / "ip_local_port_range"
    configured.write_text(ephemeral + "\n")
    monkeypatch.setattr(ports, "EPHEMERAL", configured)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", workers)
    assert ports._slice() == within
