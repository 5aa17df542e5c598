"""One node's connection to NATS, with its operations kept in the order they were asked.

The Bus interface has synchronous calls (``watch_stream``, ``publish``, ...) whose messages must
reach the server in order with the ones after them (a watch, then the request that proves it is
in place). :class:`NatsLink` queues every publish, subscribe and unsubscribe and one task hands
them to the client in that order; a request first waits for what was queued before it.

Requests are answered on one subscription of the link, ``<inbox>.*``: each request's reply subject
is the inbox and a number, and the answer (or the server's "no responders" status) settles the
request waiting under that number. This is what the client's own ``request`` does, without the
random token and the timeout task it spends on each request (the cost of every cross-node call).

A link answers in batches: the answers it gives another link in one turn of the event loop go as
one message to ``<inbox>.answers`` (:func:`pack_answers`), which settles them all. Under load a
node answers many calls at once, and each NATS message costs both clients and the server more than
its bytes do. A link's inbox carries a mark (``.roost-link.``): a client of another kind that asks
a node something gets its answer on its own reply subject, as does an answer too long to share a
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from roost.errors import ConfigError, PayloadTooLarge, Unavailable

log = logging.getLogger("roost.bus.nats")

Handler = Callable[[Msg], None]  # called on the event loop, in the subject's order
RECONNECT_WAIT_S = 0.5
CONNECT_TIMEOUT_S = 2.0
START_TIMEOUT_S = 5.0  # to reach NATS at start; after that, reconnecting never stops
CLOSE_SEND_S = 2.0  # at close, for what was queued to reach the client
# what a node asks of NATS when it cannot reach it: an error answered at once (503)
UNREACHABLE = "the message bus (NATS) is not reachable; retry shortly"
STATUS, NO_RESPONDERS = "Status", "503"  # the header of the server's "no responders" answer
LINK_MARK = ".roost-link"  # ends a link's inbox: it takes batches of answers
ANSWERS = "answers"  # after a link's inbox: the subject of a batch of answers
ANSWER_HEAD = struct.Struct(">QI")  # an answer in a batch: its request's number, its length
BATCH_BYTES = 64 * 1024  # at most, or the server's max payload if less


@dataclass(eq=False, slots=True)
class Interest:
    """A subscription asked for; ``sub`` once the client has it."""

    subject: str
    handler: Handler
    sub: Subscription | None = None
    cancelled: bool = False


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False, slots=True)
class _Barrier:
    done: asyncio.Future[None] = field(default_factory=_future)


_Op = tuple[str, Any, Any]  # ("pub", subject, data) | ("sub", Interest, None) | ("unsub", ...)


class NatsLink:
    def __init__(self, client: Client) -> None:
        self.client = client
        self._queue: asyncio.Queue[_Op | _Barrier] = asyncio.Queue()
        self._applying = False  # the worker is handing an op to the client
        self._worker = asyncio.get_running_loop().create_task(self._work())
        self._inbox = client.new_inbox() + LINK_MARK + "."  # + a request's number: its reply
        self._numbers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[bytes]] = {}  # by number: requests not answered
        self._answers: dict[str, list[tuple[int, bytes]]] = {}  # by inbox: this turn's answers
        self._about: dict[Hashable, set[str]] = {}  # the waiting requests by what they are about
        self.subscribe(self._inbox + "*", self._answered)
        # called once the client is back after an outage (its subscriptions restored by then)
        self.reconnected: Callable[[], None] = _nothing

    @classmethod
    async def connect(cls, url: str, name: str) -> NatsLink:
        servers = [server.strip() for server in url.split(",")]
        shown = ", ".join(_without_password(server) for server in servers)

        async def error(exc: Exception) -> None:
            log.warning("NATS: %s", exc)

        async def disconnected() -> None:
            if client.is_closed:  # this node's own close (at shutdown): not an outage
                return
            log.warning("NATS: disconnected from %s; reconnecting", shown)

        async def reconnected() -> None:
            log.info("NATS: reconnected to %s", shown)
            for link in made:  # the link, once made
                link.reconnected()

        # nats-py annotates these as int, yet sleeps and waits on them as seconds: fractions work
        seconds: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "reconnect_time_wait": RECONNECT_WAIT_S,
        }
        made: list[NatsLink] = []
        client = Client()
        try:
            async with asyncio.timeout(START_TIMEOUT_S):  # at start: reachable, or no start
                await client.connect(
                    servers,
                    name=name,
                    **seconds,
                    max_reconnect_attempts=-1,  # forever, once started: it recovers by itself
                    allow_reconnect=True,
                    error_cb=error,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await client.close()
            why = str(exc) or f"no answer within {START_TIMEOUT_S:g} s"
            raise ConfigError(f"setting 'nats_url': cannot connect to {shown}: {why}") from exc
        made.append(cls(client))
        return made[0]

    @property
    def connected(self) -> bool:
        return bool(self.client.is_connected)

    @property
    def max_payload(self) -> int:
        """The longest message the NATS server takes, bytes."""
        return int(self.client.max_payload)

    # ordered operations

    def publish(self, subject: str, data: bytes) -> None:
        self._queue.put_nowait(("pub", subject, data))

    def subscribe(self, subject: str, handler: Handler) -> Interest:
        interest = Interest(subject, handler)
        self._queue.put_nowait(("sub", interest, None))
        return interest

    def unsubscribe(self, interest: Interest) -> None:
        interest.cancelled = True
        self._queue.put_nowait(("unsub", interest, None))

    async def sent(self) -> None:
        """Until everything queued so far, and the answers given this turn, are in the client's
        hands."""
        if self._answers:
            self._send_answers()
        if self._queue.empty() and not self._applying:
            return
        barrier = _Barrier()
        self._queue.put_nowait(barrier)
        await barrier.done

    async def settled(self) -> None:
        """Until everything queued so far has reached the NATS server (a subscription is in
        place there, a message routed), so that any client's next message sees it."""
        await self.sent()
        await reached_server(self.client)

    async def request(
        self, subject: str, data: bytes, timeout: float, about: Hashable = None
    ) -> bytes:
        """A NATS request, after what was queued before it; its answer's data. Raises
        Unavailable when NATS is out of reach, PayloadTooLarge when ``data`` is longer than it
        takes, nats.errors.NoRespondersError and nats.errors.TimeoutError as NATS does, and
        what :meth:`fail` gives the requests ``about`` something (from the moment this is
        called: while it waits its turn too)."""
        if not self.connected:
            raise Unavailable(UNREACHABLE)
        number = str(next(self._numbers))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bytes] = loop.create_future()
        self._waiting[number] = answer
        if about is not None:
            self._about.setdefault(about, set()).add(number)
        deadline = loop.call_later(timeout, _expire, answer)
        try:
            await self.sent()
            if not answer.done():  # not failed nor expired meanwhile
                await self.client.publish(subject, data, reply=self._inbox + number)
            return await answer
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionDrainingError,  # this node is closing
            nats.errors.OutboundBufferLimitError,
        ) as exc:
            raise Unavailable(UNREACHABLE) from exc
        except nats.errors.MaxPayloadError:
            raise PayloadTooLarge(
                f"the request ({len(data)} bytes) is longer than the message bus carries "
                f"({self.max_payload})"
            ) from None
        finally:
            deadline.cancel()
            del self._waiting[number]
            if about is not None:
                numbers = self._about[about]
                numbers.discard(number)
                if not numbers:
                    del self._about[about]

    def fail(self, about: Hashable, error: Callable[[], Exception]) -> None:
        """End every request waiting ``about`` this with an ``error()`` of its own: its answer
        will not come, or no longer matters."""
        for number in self._about.get(about, ()):
            answer = self._waiting[number]
            if not answer.done():
                answer.set_exception(error())

    def _answered(self, msg: Msg) -> None:
        number = msg.subject[len(self._inbox) :]
        if number == ANSWERS:
            try:
                for number, data in unpack_answers(msg.data):
                    self._settle(number, data)
            except ValueError as exc:
                log.error("NATS: an unreadable batch of answers: %s", exc)
        elif msg.headers and msg.headers.get(STATUS) == NO_RESPONDERS:
            answer = self._waiting.get(number)
            if answer is not None and not answer.done():
                answer.set_exception(nats.errors.NoRespondersError())
        else:
            self._settle(number, msg.data)

    def _settle(self, number: str, data: bytes) -> None:
        answer = self._waiting.get(number)
        if answer is not None and not answer.done():  # else given up on: deadline, caller gone
            answer.set_result(data)

    def reply(self, msg: Msg, data: bytes) -> None:
        """Answer ``msg``. An answer to a link is queued at the end of this turn of the event
        loop, with the others to that link (see the module); any other, at once. (Once
        :meth:`close` has handed over what was queued, later answers are dropped: the node is
        going.)"""
        to = msg.reply
        if not to:
            return
        inbox, number = _link_answer(to)
        if number is None or ANSWER_HEAD.size + len(data) > self._batch_limit():
            self.publish(to, data)
            return
        batch = self._answers.get(inbox)
        if batch is None:
            if not self._answers:
                asyncio.get_running_loop().call_soon(self._send_answers)
            batch = self._answers[inbox] = []
        batch.append((number, data))

    def _send_answers(self) -> None:
        batches, self._answers = self._answers, {}
        for inbox, answers in batches.items():
            if len(answers) == 1:  # its subject as asked: a link's numbers are written so
                number, data = answers[0]
                self.publish(f"{inbox}.{number}", data)
                continue
            for packed in pack_answers(answers, self._batch_limit()):
                self.publish(f"{inbox}.{ANSWERS}", packed)

    def _batch_limit(self) -> int:
        return min(BATCH_BYTES, self.max_payload)

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):  # this turn's answers and the queue go first
            async with asyncio.timeout(CLOSE_SEND_S):
                await self.sent()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # what we asked for
            await self._worker
        try:
            await self.client.drain()
        except (TimeoutError, nats.errors.Error) as exc:
            log.warning("NATS: draining at close: %s", exc)
        if not self.client.is_closed:
            await self.client.close()

    # internals

    async def _work(self) -> None:
        while True:
            op = await self._queue.get()
            if isinstance(op, _Barrier):
                if not op.done.done():
                    op.done.set_result(None)
                continue
            self._applying = True  # taken off the queue, not yet in the client's hands
            try:
                await self._apply(op)
            except (nats.errors.Error, OSError) as exc:  # logged; the bus goes on
                log.warning("NATS: %s %s failed: %s", op[0], _subject(op), exc)
            finally:
                self._applying = False

    async def _apply(self, op: _Op) -> None:
        kind, what, data = op
        client = self.client
        if kind == "pub":
            await client.publish(what, data)
        elif kind == "sub":
            interest: Interest = what
            if not interest.cancelled:
                handler = interest.handler

                async def deliver(msg: Msg) -> None:
                    try:
                        handler(msg)
                    except Exception:  # one bad message must not end the subscription
                        log.exception("NATS: handling a message on %s failed", msg.subject)

                interest.sub = await client.subscribe(interest.subject, cb=deliver)
        elif kind == "unsub":
            interest = what
            if interest.sub is not None:
                sub, interest.sub = interest.sub, None
                await sub.unsubscribe()


async def reached_server(client: Client) -> None:
    """Until what ``client`` was given so far has reached the server. nats-py writes a flush's
    PING at once, ahead of commands still waiting for its flusher: the second round trip starts
    after the first came back, when they have all been written."""
    await client.flush()
    await client.flush()


def _nothing() -> None:
    pass


def _link_answer(reply_to: str) -> tuple[str, int | None]:
    """The inbox and request number of a link's reply subject; number None for any other."""
    inbox, _, number = reply_to.rpartition(".")
    link = inbox.endswith(LINK_MARK) and number.isascii() and number.isdigit()
    # as a link writes its numbers: no leading zero, at most 19 digits (they fit ANSWER_HEAD)
    if not link or number[0] == "0" or len(number) > 19:
        return inbox, None
    return inbox, int(number)


def pack_answers(answers: list[tuple[int, bytes]], limit: int) -> list[bytes]:
    """``answers`` (number, data) as batches, each at most ``limit`` bytes long (each answer
    with its head fits in ``limit``)."""
    batches: list[bytes] = []
    batch = bytearray()
    for number, data in answers:
        if batch and len(batch) + ANSWER_HEAD.size + len(data) > limit:
            batches.append(bytes(batch))
            batch = bytearray()
        batch += ANSWER_HEAD.pack(number, len(data))
        batch += data
    batches.append(bytes(batch))
    return batches


def unpack_answers(packed: bytes) -> list[tuple[str, bytes]]:
    """The (number, data) of a batch; ValueError if it is not one."""
    answers: list[tuple[str, bytes]] = []
    at = 0
    while at < len(packed):
        if len(packed) - at < ANSWER_HEAD.size:
            raise ValueError(f"{len(packed) - at} bytes left over after {len(answers)} answers")
        number, length = ANSWER_HEAD.unpack_from(packed, at)
        at += ANSWER_HEAD.size
        if len(packed) - at < length:
            raise ValueError(f"an answer of {length} bytes cut at {len(packed) - at}")
        answers.append((str(number), packed[at : at + length]))
        at += length
    return answers


def _expire(answer: asyncio.Future[bytes]) -> None:
    if not answer.done():
        answer.set_exception(nats.errors.TimeoutError())


def _without_password(url: str) -> str:
    """``url`` fit for a log: no user nor password."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2]


def _subject(op: _Op) -> str:
    what = op[1]
    return what.subject if isinstance(what, Interest) else str(what)
