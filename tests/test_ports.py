"""The tests' own free ports (ports.py): distinct, free, and out of the kernel's ephemeral range,
where client sockets could take them before the server binds."""

from __future__ import annotations

import random
import socket

import ports
import pytest
from ports import EPHEMERAL, free_ports


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
