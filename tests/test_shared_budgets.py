"""Budgets of failed authentications shared by the nodes (roost.auth.budgets): two nodes' budgets
told to each other in memory with fake clocks, then two nodes on a real nats-server: a failure
counted on one counts on the other, a forgiven one is forgiven there too, and garbage on the
subject is dropped without harm."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import nats
import pytest

from roost.auth.budgets import FailureBudgets
from roost.bus.nats import NatsBus, nats_bus
from roost.bus.nats_wire import failures_subject
from roost.services import Services
from roost.wiring import build_services

from conftest import make_settings
from nats_server import NatsServer, nats_server  # noqa: F401


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _budgets(tmp_path: Path, clock: FakeClock) -> FailureBudgets:
    settings = make_settings(
        tmp_path,
        auth_failure_window=60.0,
        login_failures_per_user=3,
        login_failures_per_address=5,
        device_auth_failures_per_address=2,
    )
    return FailureBudgets(settings, clock)


def _told(budgets: FailureBudgets) -> list[bytes]:
    notes: list[bytes] = []
    budgets.tell = notes.append
    return notes


# -- two nodes' budgets, told to each other by hand ---------------------------------------------


def test_a_failure_counted_on_one_node_counts_on_the_other_on_its_own_clock(
    tmp_path: Path,
) -> None:
    clock_a, clock_b = FakeClock(1000.0), FakeClock(5.0)  # the nodes' monotonic clocks differ
    a, b = _budgets(tmp_path, clock_a), _budgets(tmp_path, clock_b)
    notes = _told(a)
    for _ in range(3):
        assert a.login.attempt("alice", "192.0.2.1") is None
    for note in notes:
        b.heard(note)
    refusal = b.login.attempt("alice", "192.0.2.7")  # another address: the user's budget is spent
    assert refusal is not None and refusal.reason == "user" and refusal.whole_seconds == 60
    clock_b.now += 60  # B's window slides on B's clock
    assert b.login.attempt("alice", "192.0.2.7") is None


def test_a_success_forgives_its_attempt_on_the_other_node_too(tmp_path: Path) -> None:
    a, b = _budgets(tmp_path, FakeClock(0.0)), _budgets(tmp_path, FakeClock(0.0))
    notes = _told(a)
    for _ in range(3):
        assert a.login.attempt("alice", "192.0.2.1") is None
        a.login.succeeded("alice", "192.0.2.1")  # the right password, three times
    assert [json.loads(n)["op"] for n in notes] == ["record", "record", "forgive", "forgive"] * 3
    for note in notes:
        b.heard(note)
    assert b.login.attempt("alice", "192.0.2.1") is None  # nothing was left counted


def test_device_failures_are_told_by_address(tmp_path: Path) -> None:
    a, b = _budgets(tmp_path, FakeClock(0.0)), _budgets(tmp_path, FakeClock(0.0))
    notes = _told(a)
    a.devices.record("192.0.2.9")
    a.devices.record("192.0.2.9")
    assert [json.loads(n) for n in notes] == [
        {"budget": "device_address", "key": "192.0.2.9", "op": "record"}
    ] * 2
    for note in notes:
        b.heard(note)
    assert b.devices.retry_after("192.0.2.9") == 60
    assert b.devices.retry_after("192.0.2.10") == 0


def test_a_note_carries_no_password_and_a_budget_turned_off_tells_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, login_failures_per_user=0)
    budgets = FailureBudgets(settings, FakeClock(0.0))
    notes = _told(budgets)
    assert budgets.login.attempt("alice", "192.0.2.1") is None
    assert [json.loads(n)["budget"] for n in notes] == ["login_address"]  # not the user's: off


def test_a_note_heard_by_a_node_does_not_go_around_again(tmp_path: Path) -> None:
    a, b = _budgets(tmp_path, FakeClock(0.0)), _budgets(tmp_path, FakeClock(0.0))
    told_by_b = _told(b)
    notes = _told(a)
    a.devices.record("192.0.2.9")
    b.heard(notes[0])
    assert told_by_b == []


GARBAGE = [
    b"",
    b"not json",
    b"\xff\xfe\x00",
    b"[1, 2]",
    b"null",
    b"[" * 5000,
    b'{"budget": "login_user", "key": "alice"}',
    b'{"budget": "login_user", "key": "alice", "op": "delete"}',
    b'{"budget": "login_user", "key": 7, "op": "record"}',
    b'{"budget": "nope", "key": "alice", "op": "record"}',
    json.dumps({"budget": "login_user", "key": "x" * 65, "op": "record"}).encode(),
    json.dumps({"budget": "login_user", "key": "x" * 2000, "op": "record"}).encode(),
]


def test_garbage_is_dropped_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budgets = _budgets(tmp_path, FakeClock(0.0))
    with caplog.at_level(logging.DEBUG, logger="roost.auth"):
        for data in GARBAGE:
            budgets.heard(data)
    assert budgets.dropped == len(GARBAGE)
    assert len([r for r in caplog.records if r.name == "roost.auth"]) == 1
    assert budgets.login.attempt("alice", "192.0.2.1") is None  # nothing was counted
    assert budgets.devices.retry_after("x" * 64) == 0


def test_the_longest_keys_cross(tmp_path: Path) -> None:
    """A user name of 64 characters outside the BMP (each escaped twice in the JSON) is heard."""
    a, b = _budgets(tmp_path, FakeClock(0.0)), _budgets(tmp_path, FakeClock(0.0))
    notes = _told(a)
    name = "\U0001f600" * 200  # cut to 64 by the limiter
    for _ in range(3):
        assert a.login.attempt(name, "192.0.2.1") is None
    for note in notes:
        b.heard(note)
    assert b.dropped == 0
    assert b.login.attempt(name, "192.0.2.1") is not None


# -- two nodes on a real nats-server ------------------------------------------------------------


@pytest.fixture
async def nodes(
    tmp_path: Path,
    nats_server: NatsServer,  # noqa: F811
) -> AsyncIterator[tuple[Services, Services]]:
    factory = partial(nats_bus, url=nats_server.url)
    built: list[Services] = []
    try:
        for name in ("a", "b"):
            settings = make_settings(
                tmp_path / name,
                auth_failure_window=300.0,
                login_failures_per_user=3,
                device_auth_failures_per_address=2,
            )
            built.append(await build_services(settings, bus=factory))
        for services in built:  # each one's subscriptions are in place before a test talks
            assert isinstance(services.bus, NatsBus)
            await services.bus.settled()
        yield built[0], built[1]
    finally:
        for services in built:
            await services.bus.close()
            await services.store.close()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


def _locked_out(node: Services, address: str) -> bool:
    return node.gateway.auth_failures.retry_after(address) > 0


async def test_a_failure_on_one_node_counts_on_the_other_over_nats(
    nodes: tuple[Services, Services],
) -> None:
    a, b = nodes
    for _ in range(3):
        assert a.login_limiter.attempt("alice", "192.0.2.1") is None  # each counted until it ends
    await _until(lambda: b.login_limiter.users.retry_after("alice") > 0)
    refusal = b.login_limiter.attempt("alice", "192.0.2.2")
    assert refusal is not None and refusal.reason == "user"
    a.login_limiter.succeeded("alice", "192.0.2.1")  # the last one was right after all
    await _until(lambda: b.login_limiter.attempt("alice", "192.0.2.2") is None)
    # and the attempt B just let through is counted on A
    await _until(lambda: a.login_limiter.users.retry_after("alice") > 0)


async def test_a_failed_device_authentication_on_one_node_counts_on_the_other(
    nodes: tuple[Services, Services],
) -> None:
    a, b = nodes
    for _ in range(2):  # no such device: a failure, counted against the address
        assert await a.gateway.authenticate("alice", "dev1", "guess", "192.0.2.9") is None
    await _until(partial(_locked_out, b, "192.0.2.9"))
    assert b.gateway.auth_failures.retry_after("192.0.2.10") == 0


async def test_garbage_on_the_subject_harms_nothing(
    nodes: tuple[Services, Services],
    nats_server: NatsServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = nodes
    client = await nats.connect(nats_server.url)
    try:
        with caplog.at_level(logging.WARNING):
            for data in GARBAGE:
                await client.publish(failures_subject("intruder"), data)
            good = {"budget": "device_address", "key": "192.0.2.9", "op": "record"}
            for _ in range(2):  # after the garbage, from the same sender: heard in order
                await client.publish(failures_subject("intruder"), json.dumps(good).encode())
            await client.flush()
            for node in (a, b):
                await _until(partial(_locked_out, node, "192.0.2.9"))
    finally:
        await client.close()
    dropped = [r for r in caplog.records if "dropped a note" in r.getMessage()]
    assert len(dropped) == 2  # once per node
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # the nodes still share their own failures
    for _ in range(3):
        assert a.login_limiter.attempt("bob", "192.0.2.1") is None
    await _until(lambda: b.login_limiter.users.retry_after("bob") > 0)
