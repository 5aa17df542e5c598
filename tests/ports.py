"""Free loopback ports for the servers the tests start, chosen where no client takes them.

A port found by binding to port 0 comes from the kernel's ephemeral range, which every outgoing
connection also draws from: between choosing it and the server binding it, a client socket (an
SDK device, an HTTP client, a NATS client of any test running alongside) may take it, and the
server then fails to start ("already in use"). These ports come from just below that range,
where the kernel never puts a client socket, each pytest-xdist process from a slice of its own;
each is checked free by binding it (without SO_REUSEADDR: a port still in TIME_WAIT is passed
over too), and a process does not hand out a port twice (another server of the test may not have
bound its port yet) until most of its slice has gone.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

SPAN = 12_000  # ports below the ephemeral range to choose from, shared out between processes
SLICE_AT_LEAST = 256  # a slice smaller than this: the process takes the whole span instead
EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()  # the ports this process handed out


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports nothing listens on."""
    pool = _slice()
    if len(_given) + count > len(pool) * 3 // 4:
        _given.clear()  # the first ones handed out are long free again
    held: list[socket.socket] = []
    try:
        for _ in range(20 * len(pool)):
            if len(held) == count:
                return [sock.getsockname()[1] for sock in held]
            port = random.choice(pool)
            if port in _given:
                continue
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use (or in TIME_WAIT)
                sock.close()
                continue
            held.append(sock)
            _given.add(port)
        raise RuntimeError(f"no {count} free ports in {pool} (tests/ports.py)")
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def _slice() -> range:
    """This process's ports: its share of the SPAN ports below the ephemeral range (above it if
    there is no room below; all of them if a share would be too small)."""
    try:
        low, high = (int(bound) for bound in EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    start, end = max(1024, low - SPAN), low
    if end - start < SLICE_AT_LEAST:
        start, end = high + 1, min(65536, high + 1 + SPAN)
    if end - start < SLICE_AT_LEAST:  # the kernel takes them all: none is safe, any will do
        start, end = 1024, 1024 + SPAN
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # gw0, gw1, ...
    processes = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    # a worker replacing a dead one counts on from the last (gw3 of 3): the dead one's slice
    index = (int(worker[2:]) if worker[2:].isdigit() else 0) % processes
    share = (end - start) // processes
    if share < SLICE_AT_LEAST:
        return range(start, end)
    return range(start + index * share, start + (index + 1) * share)
