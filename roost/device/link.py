"""One live connection of a Python device, whatever the protocol.

A :class:`Link` runs the session: its reader (the session coroutine itself), a worker that
answers requests in arrival order (so a callback may await a confirmed device -> server call
without blocking the reader), a keep-alive task, one sampler per sampled stream, and the replies
awaited by confirmed calls. All of them end with the connection.

What differs between the protocols is a small :class:`Dialect`: how frames are encoded, what
authenticates, which frame is a reply, how a request is answered, when keep-alives go out
(``roost.device.legacy.LegacyDialect``, ``roost.device.iotmp.IotmpDialect``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from roost.device.resources import Opened, Resource, Stream
from roost.errors import DeviceTimeout, InvalidInput
from roost.wire.iotmp import Service
from roost.wire.pson import PsonValue

if TYPE_CHECKING:
    from roost.device.client import Device

log = logging.getLogger(__name__)

F = TypeVar("F")
Reply = tuple[int, bool, PsonValue]  # (stream id, ok, payload) of an OK / ERROR


class FrameDecoder(Protocol[F]):
    def feed(self, data: bytes) -> list[F]: ...


class Dialect(Protocol[F]):
    """The protocol-specific part of a device connection; ``F`` is the protocol's frame type."""

    @property
    def default_port(self) -> int: ...
    @property
    def keepalive(self) -> F: ...
    @property
    def keepalive_at_auth(self) -> bool:
        """The first keep-alive goes out right after authentication (else one interval later)."""

    @property
    def keepalive_needs_answer(self) -> bool:
        """The connection is dropped when the previous keep-alive went unanswered."""

    @property
    def sample_at_start(self) -> bool:
        """A sampled stream's first sample comes from the sampler at once (else the answer to
        the request that opened it carries the first value, and the sampler waits an interval)."""

    @property
    def start_stream_kind(self) -> int: ...

    def decoder(self) -> FrameDecoder[F]: ...
    def encode(self, frame: F) -> bytes: ...
    def authenticate(self, user: str, device: str, credentials: str, stream_id: int) -> F: ...
    def accepted(self, reply: F) -> bool: ...
    def is_keepalive(self, frame: F) -> bool: ...
    def is_disconnect(self, frame: F) -> bool: ...
    def kind(self, frame: F) -> int:
        """The number :attr:`Device.signal_counts` counts the frame under."""

    def reply(self, frame: F) -> Reply | None: ...
    async def answer(self, root: Resource, request: F) -> tuple[list[F], Opened | None]: ...
    async def sample(self, node: Resource, stream: Stream) -> F | None: ...
    async def events(self, node: Resource, payload: PsonValue) -> list[F]:
        """What :meth:`Device.stream` sends: the current value (or ``payload``) on the streams."""

    def refusal(self, reply: F) -> F | None:
        """The error reply that replaces a reply whose payload could not be encoded."""

    def server_call(
        self, service: Service, stream_id: int, target: PsonValue, payload: PsonValue
    ) -> F: ...
    def anonymous(self, service: Service) -> bool:
        """Whether a confirmed ``service`` call goes out with stream id 0 (one at a time)."""


class Link(Generic[F]):
    """One live connection of a :class:`Device`."""

    def __init__(
        self,
        device: Device,
        dialect: Dialect[F],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.device = device
        self.dialect = dialect
        self.reader = reader
        self.writer = writer
        self.decoder = dialect.decoder()
        self.requests: asyncio.Queue[F] = asyncio.Queue(maxsize=64)
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.keepalive_answered = True
        self.close_reason = "connection closed by the server"
        self.tasks: set[asyncio.Task[None]] = set()
        self._early: list[F] = []  # frames that came with the authentication reply
        self._anonymous = asyncio.Lock()
        self._random = random.Random()

    async def send(self, frame: F) -> None:
        if self.writer.is_closing():
            raise ConnectionError("connection closed")
        self.writer.write(self.dialect.encode(frame))
        await self.writer.drain()

    async def read_frames(self) -> list[F]:
        """The next frames from the socket; [] at end of stream."""
        while True:
            data = await self.reader.read(65536)
            if not data:
                return []
            frames = self.decoder.feed(data)
            if frames:
                return frames

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a task for this connection; if it fails, log it and drop the connection."""
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("connection task %s failed", task.get_name(), exc_info=exc)
            self.close_reason = f"internal error: {exc!r}"
            self.writer.close()

    def new_stream_id(self) -> int:
        sid = self._random.randint(1, 0xFFFF)
        while sid in self.pending:
            sid = self._random.randint(1, 0xFFFF)
        return sid

    # -- the session ------------------------------------------------------------------------------

    async def authenticate(self) -> bool:
        """Send the credentials; True iff the first reply accepts them."""
        dev = self.device
        auth = self.dialect.authenticate(
            dev.user, dev.device, dev.credentials, self.new_stream_id()
        )
        await self.send(auth)
        async with asyncio.timeout(dev.request_timeout):
            frames = await self.read_frames()
        if not frames:
            raise ConnectionError("connection closed during authentication")
        self._early = frames[1:]
        return self.dialect.accepted(frames[0])

    async def serve(self) -> None:
        """Answer the server until the connection ends."""
        self.spawn(self._work())
        self.spawn(self._keepalive())
        frames, self._early = self._early, []
        while True:
            for frame in frames:
                await self._dispatch(frame)
            if self.writer.is_closing():
                return
            frames = await self.read_frames()
            if not frames:
                return

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError as exc:
            log.debug("device %s: error while closing: %s", self.device.device, exc)

    async def _dispatch(self, frame: F) -> None:
        dialect, device = self.dialect, self.device
        if dialect.is_keepalive(frame):
            self.keepalive_answered = True
            device.keepalives_received += 1
            return
        device.received.append(frame)
        device.signal_counts[dialect.kind(frame)] += 1
        reply = dialect.reply(frame)
        if reply is not None:
            future = self.pending.pop(reply[0], None)
            if future is not None and not future.done():
                future.set_result(reply)
        elif dialect.is_disconnect(frame):
            self.close_reason = "disconnected by the server"
            self.writer.close()
        else:
            await self.requests.put(frame)

    async def _work(self) -> None:
        """Answer the server's requests one at a time, in arrival order."""
        while True:
            request = await self.requests.get()
            frames, opened = await self.dialect.answer(self.device.root, request)
            try:
                for frame in frames:
                    await self._send_reply(frame)
            except (ConnectionError, OSError):
                return
            if opened is not None and opened.stream.interval_ms > 0:
                opened.stream.sampler = self.spawn(self._sample(opened.node, opened.stream))

    async def _send_reply(self, frame: F) -> None:
        """Send; a reply whose payload cannot be encoded is replaced by the dialect's refusal."""
        try:
            await self.send(frame)
        except InvalidInput:
            log.exception("device %s: cannot encode %r", self.device.device, frame)
            refusal = self.dialect.refusal(frame)
            if refusal is not None:
                await self.send(refusal)

    async def _sample(self, node: Resource, stream: Stream) -> None:
        period = stream.interval_ms / 1000
        if not self.dialect.sample_at_start:
            await asyncio.sleep(period)
        while True:
            sample = await self.dialect.sample(node, stream)
            if sample is not None:
                try:
                    await self._send_reply(sample)
                except (ConnectionError, OSError):
                    return
            await asyncio.sleep(period)

    async def _keepalive(self) -> None:
        dialect, device = self.dialect, self.device
        if not dialect.keepalive_at_auth:
            await asyncio.sleep(device.keepalive_interval)
        while True:
            if dialect.keepalive_needs_answer and not self.keepalive_answered:
                log.warning("device %s: keep-alive not answered", device.device)
                self.close_reason = "keep-alive not answered"
                self.writer.close()
                return
            self.keepalive_answered = False
            try:
                await self.send(dialect.keepalive)
            except (ConnectionError, OSError):
                return
            device.keepalives_sent += 1
            await asyncio.sleep(device.keepalive_interval)

    # -- device -> server -------------------------------------------------------------------------

    async def push(self, node: Resource, payload: PsonValue) -> bool:
        """Send the dialect's stream events for ``node``; False if there is none to send."""
        frames = await self.dialect.events(node, payload)
        try:
            for frame in frames:
                await self.send(frame)
        except (ConnectionError, OSError):
            return False
        return bool(frames)

    async def call(
        self, service: Service, target: PsonValue, payload: PsonValue, confirm: bool
    ) -> tuple[bool, PsonValue]:
        """Call a server service: (True, None) once written without ``confirm``, else (ok, reply
        payload). Raises ConnectionError/OSError if the connection fails, DeviceTimeout without
        a reply within the request timeout."""
        dialect = self.dialect
        if not confirm:
            await self.send(dialect.server_call(service, 0, target, payload))
            return True, None
        if dialect.anonymous(service):
            async with self._anonymous:
                return await self._exchange(0, service, target, payload)
        return await self._exchange(self.new_stream_id(), service, target, payload)

    async def _exchange(
        self, sid: int, service: Service, target: PsonValue, payload: PsonValue
    ) -> tuple[bool, PsonValue]:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.pending[sid] = future
        try:
            await self.send(self.dialect.server_call(service, sid, target, payload))
            async with asyncio.timeout(self.device.request_timeout):
                _, ok, reply_payload = await future
        except TimeoutError:
            raise DeviceTimeout(
                f"no reply to {service.name} within {self.device.request_timeout} s"
            ) from None
        finally:
            if self.pending.get(sid) is future:
                del self.pending[sid]
        return ok, reply_payload
