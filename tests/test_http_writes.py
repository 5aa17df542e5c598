"""JoinedWrites: a response's head and body leave in one send; nothing is held past a loop step."""

from __future__ import annotations

import asyncio
from typing import cast

from roost.app import Roost
from roost.net.http import JoinedWrites


class Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def joined(recorder: Recorder) -> JoinedWrites:
    return JoinedWrites(cast(asyncio.Transport, recorder), asyncio.get_running_loop())


async def test_head_and_body_leave_together() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert recorder.sent == []
    writes.write(b"body")
    assert recorder.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    await asyncio.sleep(0)
    assert recorder.sent == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # the step's flush found nothing


async def test_a_lone_write_leaves_at_the_end_of_the_loop_step() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    writes.write(b"head of a stream")
    await asyncio.sleep(0)
    assert recorder.sent == [b"head of a stream"]
    writes.write(b"event 1")
    writes.write(b"event 2")
    writes.write(b"event 3")
    await asyncio.sleep(0)
    assert recorder.sent == [b"head of a stream", b"event 1event 2", b"event 3"]


async def test_flush_sends_what_is_held_at_once() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    writes.write(bytearray(b"HTTP/1.1 200 OK\r\n\r\n"))  # a HEAD answer: no body follows
    writes.flush()
    assert recorder.sent == [b"HTTP/1.1 200 OK\r\n\r\n"]
    await asyncio.sleep(0)
    assert recorder.sent == [b"HTTP/1.1 200 OK\r\n\r\n"]


async def test_a_held_buffer_is_not_the_callers() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    head = bytearray(b"head")
    writes.write(head)
    head[:] = b"XXXX"  # the caller reuses its buffer
    writes.write(memoryview(b"body"))
    assert recorder.sent == [b"headbody"]


async def test_close_sends_what_is_held_first() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    writes.write(b"last chunk")
    writes.close()
    assert recorder.sent == [b"last chunk"]
    assert recorder.closed and writes.is_closing()


async def test_nothing_is_written_to_a_closing_transport() -> None:
    recorder = Recorder()
    writes = joined(recorder)
    writes.write(b"late")
    recorder.closed = True  # the peer went away, or the protocol closed it
    await asyncio.sleep(0)
    assert recorder.sent == []


async def test_head_answers_arrive_whole_on_a_kept_connection(server: Roost) -> None:
    """A HEAD answer is a head alone: it must leave when the response completes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http_port)
    try:
        for _ in range(3):
            writer.write(b"HEAD /v1/server/healthcheck HTTP/1.1\r\nhost: roost\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"content-length: 15\r\n" in head.lower()
        writer.write(b"GET /v1/server/healthcheck HTTP/1.1\r\nhost: roost\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(reader.readexactly(15), 2) == b'{"status":"ok"}'
    finally:
        writer.close()
