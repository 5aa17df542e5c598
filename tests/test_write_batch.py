"""WriteBatch: a step's writes to many transports leave back to back at its end, in order."""

from __future__ import annotations

import asyncio
from typing import cast

from roost.net.batch import WriteBatch


class Recorder:
    def __init__(self, log: list[tuple[str, bytes]], name: str) -> None:
        self.log = log
        self.name = name
        self.closing = False

    def write(self, data: bytes) -> None:
        self.log.append((self.name, data))

    def is_closing(self) -> bool:
        return self.closing


def transports(log: list[tuple[str, bytes]], *names: str) -> list[asyncio.WriteTransport]:
    return [cast(asyncio.WriteTransport, Recorder(log, name)) for name in names]


async def test_a_steps_writes_leave_together_at_its_end_in_order() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = transports(log, "a", "b")
    batch = WriteBatch(asyncio.get_running_loop())
    batch.write(a, b"1")
    batch.write(b, b"2")
    batch.write(a, b"3")
    assert log == []
    await asyncio.sleep(0)
    assert log == [("a", b"1"), ("b", b"2"), ("a", b"3")]
    batch.write(b, b"4")  # the next step's batch
    assert log == [("a", b"1"), ("b", b"2"), ("a", b"3")]
    await asyncio.sleep(0)
    assert log[-1] == ("b", b"4")


async def test_a_transport_closed_meanwhile_gets_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = transports(log, "a", "b")
    batch = WriteBatch(asyncio.get_running_loop())
    batch.write(a, b"lost")
    batch.write(b, b"kept")
    cast(Recorder, a).closing = True
    await asyncio.sleep(0)
    assert log == [("b", b"kept")]


async def test_flush_writes_at_once_and_the_steps_end_finds_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    (a,) = transports(log, "a")
    batch = WriteBatch(asyncio.get_running_loop())
    batch.write(a, b"now")
    batch.flush()
    assert log == [("a", b"now")]
    await asyncio.sleep(0)
    assert log == [("a", b"now")]


async def test_write_tells_what_a_transport_has_held_until_the_flush() -> None:
    log: list[tuple[str, bytes]] = []
    a, b = transports(log, "a", "b")
    batch = WriteBatch(asyncio.get_running_loop())
    assert batch.write(a, b"12") == 2
    assert batch.write(b, b"123") == 3
    assert batch.write(a, b"345") == 5
    batch.flush()
    assert batch.write(a, b"6") == 1


class Broken(Recorder):
    def write(self, data: bytes) -> None:
        raise RuntimeError("unable to perform operation: the handler is closed")


async def test_a_failing_write_costs_the_others_nothing() -> None:
    log: list[tuple[str, bytes]] = []
    (a,) = transports(log, "a")
    broken = cast(asyncio.WriteTransport, Broken(log, "broken"))
    batch = WriteBatch(asyncio.get_running_loop())
    batch.write(broken, b"lost")
    batch.write(a, b"kept")
    batch.flush()
    assert log == [("a", b"kept")]
