"""NatsLink's requests on a real nats-server: answers come back on the link's one reply
subscription, each to the request that asked, whatever order they are sent in, the answers of one
turn as one message (sized to the server's max payload; a client of another kind gets each on its
own subject); a subject nobody serves and an answer later than the deadline raise what NATS
raises, and a late answer reaches no one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from roost.bus.nats_link import (
    ANSWER_HEAD,
    BATCH_BYTES,
    NatsLink,
    pack_answers,
    reached_server,
    unpack_answers,
)
from roost.bus.nats_wire import decode, encode

from nats_server import SMALL_PAYLOAD, NatsServer, nats_server, small_nats_server  # noqa: F401


@pytest.fixture
async def links(nats_server: NatsServer) -> AsyncIterator[tuple[NatsLink, NatsLink]]:  # noqa: F811
    asking = await NatsLink.connect(nats_server.url, "asking")
    answering = await NatsLink.connect(nats_server.url, "answering")
    try:
        yield asking, answering
    finally:
        await asking.close()
        await answering.close()


async def _serving(link: NatsLink, subject: str, handler: Callable[[Msg], None]) -> None:
    """``link`` hands the messages on ``subject`` to ``handler``, in place at the server once
    this returns."""
    link.subscribe(subject, handler)
    await link.settled()


async def _held(link: NatsLink, subject: str = "held") -> list[Msg]:
    """The messages on ``subject``, which ``link`` takes and leaves unanswered (the list fills as
    they come), in place at the server once this returns."""
    held: list[Msg] = []
    await _serving(link, subject, held.append)
    return held


async def _holding(held: list[Msg], count: int) -> None:
    """Until ``held`` has ``count`` messages (at most 5 s)."""
    for _ in range(500):
        if len(held) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(held)} messages held, not {count}")


async def test_concurrent_requests_each_get_their_own_answer_in_any_order(
    links: tuple[NatsLink, NatsLink],
) -> None:
    asking, answering = links
    held: list[Msg] = []
    everyone = asyncio.Event()

    def hold(msg: Msg) -> None:  # answers none until all have come, then in reverse order
        held.append(msg)
        if len(held) == 20:
            everyone.set()

    await _serving(answering, "echo", hold)
    calls = [asyncio.ensure_future(asking.request("echo", str(i).encode(), 5)) for i in range(20)]
    await asyncio.wait_for(everyone.wait(), 5)
    received = asking.client.stats["in_msgs"]
    for msg in reversed(held):  # in one turn of the loop: one message, a batch of 20 answers
        answering.reply(msg, b"re " + msg.data)
    answers = await asyncio.gather(*calls)
    assert answers == [f"re {i}".encode() for i in range(20)]
    assert asking.client.stats["in_msgs"] - received == 1


async def test_nobody_serving_the_subject_raises_no_responders(
    links: tuple[NatsLink, NatsLink],
) -> None:
    asking, _ = links
    with pytest.raises(nats.errors.NoRespondersError):
        await asking.request("nobody.here", b"?", 5)


async def test_an_answer_after_the_deadline_reaches_no_one(
    links: tuple[NatsLink, NatsLink],
) -> None:
    asking, answering = links
    late: list[Msg] = []
    answering.subscribe("slow", late.append)

    def quick(msg: Msg) -> None:
        answering.reply(msg, b"quick")

    await _serving(answering, "fast", quick)
    with pytest.raises(nats.errors.TimeoutError):
        await asking.request("slow", b"1", 0.2)
    assert len(late) == 1
    held = await _held(answering)
    waiting = asyncio.ensure_future(asking.request("held", b"2", 5))
    await _holding(held, 1)  # the request waiting is in the answering node's hands
    # the late answer, then the right one, in this order on one connection: the request
    # waiting gets its own, not the one given up on
    answering.reply(late[0], b"too late")  # to the number of the request given up on
    answering.reply(held[0], b"held")
    assert await waiting == b"held"
    assert await asking.request("fast", b"3", 5) == b"quick"


async def test_failing_what_requests_are_about_ends_those_alone(
    links: tuple[NatsLink, NatsLink],
) -> None:
    asking, answering = links
    held = await _held(answering)
    about_a = [asyncio.ensure_future(asking.request("held", b"a", 5, about="a")) for _ in "12"]
    about_b = asyncio.ensure_future(asking.request("held", b"b", 5, about="b"))
    untagged = asyncio.ensure_future(asking.request("held", b"-", 5))
    await _holding(held, 4)  # all four wait in the answering node's hands
    asking.fail("a", lambda: LookupError("moved"))
    for call in about_a:
        with pytest.raises(LookupError, match="moved"):
            await call
    for msg in held:
        answering.reply(msg, b"re " + msg.data)
    assert await about_b == b"re b"
    assert await untagged == b"re -"


async def test_a_request_failed_while_waiting_its_turn_ends_and_is_never_sent(
    links: tuple[NatsLink, NatsLink], monkeypatch: pytest.MonkeyPatch
) -> None:
    asking, answering = links
    held = await _held(answering)
    publish = asking.client.publish
    handing = asyncio.Event()

    async def slow_elsewhere(subject: str, payload: bytes = b"", **more: Any) -> None:
        if subject == "elsewhere":  # a publish the client takes its time over
            handing.set()
            await asyncio.sleep(0.2)
        await publish(subject, payload, **more)

    monkeypatch.setattr(asking.client, "publish", slow_elsewhere)
    asking.publish("elsewhere", b"x")  # queued ahead of the request: it waits its turn
    await handing.wait()
    call = asyncio.ensure_future(asking.request("held", b"a", 5, about="a"))
    await asyncio.sleep(0.05)
    assert not call.done()
    asking.fail("a", lambda: LookupError("moved"))
    with pytest.raises(LookupError, match="moved"):
        await call
    control = asyncio.ensure_future(asking.request("held", b"b", 5, about="b"))
    await _holding(held, 1)  # the control request is in the answering node's hands
    assert [msg.data for msg in held] == [b"b"]  # the failed one never went out
    answering.reply(held[0], b"re b")
    assert await control == b"re b"


async def test_a_client_of_another_kind_gets_its_answers_on_its_own_subjects(
    links: tuple[NatsLink, NatsLink],
    nats_server: NatsServer,  # noqa: F811
) -> None:
    _, answering = links
    held = await _held(answering, "echo")
    other = await nats.connect(nats_server.url)
    try:
        calls = [asyncio.ensure_future(other.request("echo", b"%d" % i, 5)) for i in range(3)]
        await _holding(held, 3)
        for msg in held:  # in one turn, as to a link: yet each goes to its own reply subject
            answering.reply(msg, b"re " + msg.data)
        answers = await asyncio.gather(*calls)
        assert sorted(answer.data for answer in answers) == [b"re 0", b"re 1", b"re 2"]
    finally:
        await other.close()


async def test_answers_given_just_before_close_still_go_out(
    links: tuple[NatsLink, NatsLink],
) -> None:
    asking, answering = links
    held = await _held(answering)
    calls = [asyncio.ensure_future(asking.request("held", b"%d" % i, 5)) for i in range(2)]
    await _holding(held, 2)
    for msg in held:
        answering.reply(msg, b"re " + msg.data)
    await answering.close()  # in the same turn: the batch had not been sent yet
    assert sorted(await asyncio.gather(*calls)) == [b"re 0", b"re 1"]


def test_a_batch_of_answers_reads_back_and_splits_at_its_limit() -> None:
    answers = [(1, b""), (2**40, b"x" * 40_000), (7, b"y" * 40_000), (8, b"z")]
    batches = pack_answers(answers, BATCH_BYTES)
    assert len(batches) == 2  # 80 kB of answers: more than one batch holds
    assert all(len(batch) <= BATCH_BYTES for batch in batches)
    read = [answer for batch in batches for answer in unpack_answers(batch)]
    assert read == [(str(number), data) for number, data in answers]


@pytest.mark.parametrize("cut", [1, ANSWER_HEAD.size - 1, ANSWER_HEAD.size + 1])
def test_a_cut_batch_is_refused(cut: int) -> None:
    packed = pack_answers([(1, b"first"), (2, b"second")], BATCH_BYTES)[0]
    with pytest.raises(ValueError):
        unpack_answers(packed[:-cut])


async def test_an_unreadable_batch_is_logged_and_the_link_goes_on(
    links: tuple[NatsLink, NatsLink], caplog: pytest.LogCaptureFixture
) -> None:
    asking, answering = links
    held = await _held(answering)
    call = asyncio.ensure_future(asking.request("held", b"a", 5))
    await _holding(held, 1)
    inbox = held[0].reply.rpartition(".")[0]
    answering.publish(f"{inbox}.answers", b"\x00\x01 not a batch")
    await answering.settled()
    await asking.settled()
    assert "unreadable batch of answers" in caplog.text
    answering.reply(held[0], b"re a")
    assert await call == b"re a"


async def test_answers_to_two_links_in_one_turn_each_reach_their_own(
    nats_server: NatsServer,  # noqa: F811
    links: tuple[NatsLink, NatsLink],
) -> None:
    first, answering = links
    second = await NatsLink.connect(nats_server.url, "second")
    try:
        held = await _held(answering)
        calls = [
            asyncio.ensure_future(link.request("held", name + b"%d" % i, 5))
            for link, name in ((first, b"a"), (second, b"b"))
            for i in range(2)
        ]
        await _holding(held, 4)
        for msg in held:
            answering.reply(msg, b"re " + msg.data)
        assert await asyncio.gather(*calls) == [b"re a0", b"re a1", b"re b0", b"re b1"]
    finally:
        await second.close()


async def _raw_answers(
    server: NatsServer, answering: NatsLink, reply_subjects: list[str]
) -> dict[str, bytes]:
    """What a plain client receives on each of ``reply_subjects`` when ``answering`` answers,
    in one turn, a request of its carrying that reply subject."""
    held = await _held(answering)
    other = await nats.connect(server.url)
    try:
        received: dict[str, bytes] = {}

        async def receive(msg: Msg) -> None:
            received[msg.subject] = msg.data

        for subject in reply_subjects:
            await other.subscribe(subject, cb=receive)
            await other.publish("held", subject.encode(), reply=subject)
        await reached_server(other)
        await _holding(held, len(reply_subjects))
        for msg in held:
            answering.reply(msg, b"re " + msg.data)
        await answering.settled()
        await reached_server(other)
        return received
    finally:
        await other.close()


async def test_a_lone_answer_goes_plain_to_its_reply_subject(
    nats_server: NatsServer,  # noqa: F811
    links: tuple[NatsLink, NatsLink],
) -> None:
    _, answering = links
    subject = "_INBOX.someone.roost-link.5"
    assert await _raw_answers(nats_server, answering, [subject]) == {
        subject: b"re " + subject.encode()
    }


@pytest.mark.parametrize("number", ["007", "1" * 20, "\u00b2", "x1"])
async def test_a_reply_subject_not_numbered_as_a_link_numbers_gets_a_plain_answer(
    nats_server: NatsServer,  # noqa: F811
    links: tuple[NatsLink, NatsLink],
    number: str,
) -> None:
    """Two such answers in one turn are not batched: each goes to its own subject."""
    _, answering = links
    subjects = [f"_INBOX.a.roost-link.{number}", f"_INBOX.a.roost-link.{number}0"]
    received = await _raw_answers(nats_server, answering, subjects)
    assert received == {subject: b"re " + subject.encode() for subject in subjects}


async def test_batches_fit_the_servers_max_payload(
    small_nats_server: NatsServer,  # noqa: F811
) -> None:
    asking = await NatsLink.connect(small_nats_server.url, "asking")
    answering = await NatsLink.connect(small_nats_server.url, "answering")
    try:
        assert answering.max_payload == SMALL_PAYLOAD
        held = await _held(answering)
        sizes = [1500, 1500, 1500, 1500, SMALL_PAYLOAD - 4]  # the last: too long to share
        calls = [asyncio.ensure_future(asking.request("held", b"%d" % n, 5)) for n in sizes]
        await _holding(held, len(sizes))
        received = asking.client.stats["in_msgs"]
        for msg in held:
            answering.reply(msg, b"x" * int(msg.data))
        answers = await asyncio.gather(*calls)
        assert [len(answer) for answer in answers] == sizes
        assert asking.client.stats["in_msgs"] - received == 3  # two batches of two, one alone
    finally:
        await asking.close()
        await answering.close()


@pytest.mark.parametrize(
    "message",
    [
        {"op": "request", "key": ["alice", "dev1"], "path": ["temperature"], "payload": 21.5},
        {"value": b"\x00\xff OTA chunk", "nested": [{"chunk": b""}]},
        {"value": "\x00bytes", "text": ["with the marker: \x00bytes"]},
        # a caller's own payload shaped like the marker stays what it was
        {"payload": {"\x00bytes": "not base64 !"}, "also": {"\x00bytes": "aGk="}},
        {"payload": {"\x00\x00bytes": 1, "\x00": [{"\x00x": b"raw"}]}, "chunk": b"\x01"},
        {"payload": {"\x00bytes": "aGk="}, "chunk": b"\x01"},
    ],
)
def test_bus_messages_cross_the_wire_unchanged(message: dict[str, object]) -> None:
    """JSON on the wire; bytes values (read back with the hook only when the marker is there)
    come back as bytes, and text holding the marker comes back as that text."""
    assert decode(encode(message)) == message


async def test_an_outage_is_logged_and_the_nodes_own_close_is_not(
    nats_server: NatsServer,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="roost.bus.nats")
    link = await NatsLink.connect(nats_server.url, "outage")
    nats_server.stop()
    deadline = time.monotonic() + 10
    while "disconnected from" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        await asyncio.sleep(0.02)
    nats_server.start()
    while not link.connected:
        assert time.monotonic() < deadline, caplog.text
        await asyncio.sleep(0.02)
    caplog.clear()
    await link.close()
    assert "disconnected" not in caplog.text
