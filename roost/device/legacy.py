"""A Python device speaking the legacy Thinger protocol (protocol.md 2.5-2.8), over asyncio.

It behaves like the official client: AUTH with ``[user, device, credentials]`` and authenticated
iff the first reply is REQUEST_OK; a keep-alive right after auth and then every interval, the
connection dropped when the previous one went unanswered; requests answered in arrival order;
streams with samples and events; reconnection after a delay.

Per connection there is a reader (the session coroutine itself), a worker that runs requests in
order (so a callback may await a confirmed device -> server call without blocking the reader), a
keep-alive task and one sampler per sampled stream. All of them end with the connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
from collections import Counter, deque
from collections.abc import Coroutine, Sequence
from typing import Any

from roost.device.resources import (
    InOutFn,
    OutputFn,
    Resource,
    RunFn,
    SetterFn,
    Stream,
    answer_request,
    split_path,
    start_stream,
    stop_stream,
    stream_message,
)
from roost.errors import DecodeError, DeviceTimeout, InvalidInput, NotFound
from roost.wire import legacy
from roost.wire.legacy import KEEP_ALIVE, Frame, KeepAlive, Message, Signal
from roost.wire.pson import PsonValue

log = logging.getLogger(__name__)

ResourcePath = str | Sequence[str]


class _Link:
    """One live connection: the streams, the request queue and the keep-alive flag."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = legacy.Decoder()
        self.requests: asyncio.Queue[Message] = asyncio.Queue(maxsize=64)
        self.keepalive_answered = True
        self.close_reason = "connection closed by the server"
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, frame: Frame) -> None:
        if self.writer.is_closing():
            raise ConnectionError("connection closed")
        self.writer.write(legacy.encode(frame))
        await self.writer.drain()

    async def read_frames(self) -> list[Frame]:
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


class Device:
    """A device with resources that connects to a Thinger-compatible server (legacy protocol)."""

    def __init__(
        self,
        user: str,
        device: str,
        credentials: str,
        host: str = "127.0.0.1",
        port: int = 25200,
        *,
        reconnect_delay: float = 5.0,
        keepalive_interval: float = 60.0,
        request_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        history: int = 256,
    ) -> None:
        self.user = user
        self.device = device
        self.credentials = credentials
        self.host = host
        self.port = port
        self.reconnect_delay = reconnect_delay
        self.keepalive_interval = keepalive_interval
        self.request_timeout = request_timeout
        self.ssl = ssl
        self.root = Resource("")
        self.connected = asyncio.Event()
        self.auth_failed = False  # the last attempt was rejected
        self.auth_failures = 0
        self.connect_count = 0  # successful authentications
        self.last_error: str | None = None
        self.received: deque[Message] = deque(maxlen=history)
        self.signal_counts: Counter[int] = Counter()
        self.keepalives_sent = 0
        self.keepalives_received = 0
        self._link: _Link | None = None
        self._runner: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._property_lock = asyncio.Lock()
        self._random = random.Random()

    # -- resources --------------------------------------------------------------------------------

    def resource(self, path: ResourcePath) -> Resource:
        """The resource at ``path`` ("a/b" or ["a", "b"]), created as a container if missing."""
        node = self.root
        for name in split_path(path):
            node = node.child(name)
        return node

    def output(self, path: ResourcePath, fn: OutputFn) -> Resource:
        return self.resource(path).set_output(fn)

    def input(
        self, path: ResourcePath, setter: SetterFn, getter: OutputFn | None = None
    ) -> Resource:
        return self.resource(path).set_input(setter, getter)

    def input_output(self, path: ResourcePath, fn: InOutFn, sample: PsonValue = None) -> Resource:
        return self.resource(path).set_input_output(fn, sample)

    def run(self, path: ResourcePath, fn: RunFn) -> Resource:
        return self.resource(path).set_run(fn)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._link is not None

    @property
    def start_stream_count(self) -> int:
        return self.signal_counts[Signal.START_STREAM]

    async def start(self) -> None:
        """Connect in the background (and keep reconnecting) until :meth:`stop`."""
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"device {self.device}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until authenticated; raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self.connected.wait()

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            try:
                await runner
            except asyncio.CancelledError:
                if (task := asyncio.current_task()) is not None and task.cancelling():
                    raise

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except (OSError, DecodeError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("device %s/%s: connection ended: %s", self.user, self.device, exc)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("device %s/%s: unexpected error", self.user, self.device)
            await asyncio.sleep(self.reconnect_delay)

    async def _session(self) -> None:
        async with asyncio.timeout(self.request_timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        link = _Link(reader, writer)
        try:
            frames = await self._authenticate(link)
            if frames is None:
                return
            self._link = link
            self.connect_count += 1
            self.connected.set()
            link.spawn(self._work(link))
            link.spawn(self._keepalive(link))
            while True:
                for frame in frames:
                    await self._dispatch(link, frame)
                frames = await link.read_frames()
                if not frames:
                    break
            self.last_error = link.close_reason
            log.info("device %s/%s: %s", self.user, self.device, link.close_reason)
        finally:
            await self._close(link)

    async def _authenticate(self, link: _Link) -> list[Frame] | None:
        """Send AUTH; return the frames after the accepting reply, None if rejected."""
        auth = Message(signal=Signal.AUTH, resource=[self.user, self.device, self.credentials])
        await link.send(auth)
        async with asyncio.timeout(self.request_timeout):
            frames = await link.read_frames()
        if not frames:
            raise ConnectionError("connection closed during authentication")
        reply = frames[0]
        if isinstance(reply, Message) and reply.signal == Signal.REQUEST_OK:
            self.auth_failed = False
            return frames[1:]
        self.auth_failed = True
        self.auth_failures += 1
        self.last_error = "authentication failed"
        log.warning("device %s/%s: authentication failed", self.user, self.device)
        return None

    async def _close(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        self.connected.clear()
        self.root.close_streams()
        for task in list(link.tasks):
            task.cancel()
        await asyncio.gather(*link.tasks, return_exceptions=True)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        link.writer.close()
        try:
            await link.writer.wait_closed()
        except OSError as exc:
            log.debug("device %s/%s: error while closing: %s", self.user, self.device, exc)

    # -- incoming ---------------------------------------------------------------------------------

    async def _dispatch(self, link: _Link, frame: Frame) -> None:
        if isinstance(frame, KeepAlive):
            link.keepalive_answered = True  # the official client does not answer server ones
            self.keepalives_received += 1
            return
        self.received.append(frame)
        self.signal_counts[frame.signal] += 1
        if frame.signal in (Signal.REQUEST_OK, Signal.REQUEST_ERROR):
            future = self._pending.pop(frame.stream_id, None)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        await link.requests.put(frame)

    async def _work(self, link: _Link) -> None:
        """Answer the server's requests one at a time, in arrival order."""
        while True:
            request = await link.requests.get()
            if request.signal == Signal.START_STREAM:
                node, frames = await start_stream(self.root, request)
            elif request.signal == Signal.STOP_STREAM:
                node, frames = None, stop_stream(self.root, request)
            else:
                node, frames = None, await answer_request(self.root, request)
            try:
                for frame in frames:
                    await self._send_reply(link, frame)
            except (ConnectionError, OSError):
                return
            if node is not None and node.stream is not None and node.stream.interval_ms > 0:
                node.stream.sampler = link.spawn(self._sample(link, node, node.stream))

    async def _send_reply(self, link: _Link, frame: Message) -> None:
        """Send; a reply whose payload cannot be encoded becomes REQUEST_ERROR."""
        try:
            await link.send(frame)
        except InvalidInput:
            log.exception("device %s/%s: cannot encode %r", self.user, self.device, frame)
            if frame.signal == Signal.REQUEST_OK:
                await link.send(Message(frame.stream_id, Signal.REQUEST_ERROR))

    async def _sample(self, link: _Link, node: Resource, stream: Stream) -> None:
        """STREAM_SAMPLE every interval, the first one at once (as captured)."""
        while True:
            sample = await stream_message(node, Signal.STREAM_SAMPLE)
            if sample is not None:
                try:
                    await self._send_reply(link, sample)
                except (ConnectionError, OSError):
                    return
            await asyncio.sleep(stream.interval_ms / 1000)

    async def _keepalive(self, link: _Link) -> None:
        while True:
            if not link.keepalive_answered:
                log.warning("device %s/%s: keep-alive not answered", self.user, self.device)
                link.close_reason = "keep-alive not answered"
                link.writer.close()
                return
            link.keepalive_answered = False
            try:
                await link.send(KEEP_ALIVE)
            except (ConnectionError, OSError):
                return
            self.keepalives_sent += 1
            await asyncio.sleep(self.keepalive_interval)

    # -- device -> server -------------------------------------------------------------------------

    async def stream(self, path: ResourcePath, payload: PsonValue = None) -> bool:
        """Send a STREAM_EVENT on the stream open on ``path`` (its api-io form unless
        ``payload`` is given); False when no stream is open or the device is offline."""
        node = self.root.find(split_path(path))
        link = self._link
        if node is None or node.stream is None or link is None:
            return False
        event: Message | None = Message(node.stream.stream_id, Signal.STREAM_EVENT, payload=payload)
        if payload is None:
            event = await stream_message(node, Signal.STREAM_EVENT)
        if event is None:
            return False
        try:
            await link.send(event)
        except (ConnectionError, OSError):
            return False
        return True

    async def write_bucket(self, bucket: str, data: PsonValue, *, confirm: bool = False) -> bool:
        return await self._send_to_server(Signal.BUCKET_DATA, bucket, None, data, confirm)

    async def call_endpoint(
        self, endpoint: str, data: PsonValue = None, *, confirm: bool = False
    ) -> bool:
        return await self._send_to_server(Signal.CALL_ENDPOINT, endpoint, None, data, confirm)

    async def call_device(
        self, device: str, resource: str, data: PsonValue = None, *, confirm: bool = False
    ) -> bool:
        return await self._send_to_server(Signal.CALL_DEVICE, device, [resource], data, confirm)

    async def set_property(self, prop: str, data: PsonValue, *, confirm: bool = False) -> bool:
        return await self._send_to_server(Signal.SET_PROPERTY, prop, None, data, confirm)

    async def get_property(self, prop: str) -> PsonValue:
        """Ask the server for a property (sent with stream id 0, as the official client does).

        Raises ConnectionError when offline or disconnected, DeviceTimeout without a reply,
        NotFound when the server answers REQUEST_ERROR.
        """
        async with self._property_lock:
            reply = await self._exchange(Message(0, Signal.GET_PROPERTY, identifier=prop))
        if reply.signal != Signal.REQUEST_OK:
            raise NotFound(f"property {prop!r} refused by the server")
        return reply.payload

    async def _send_to_server(
        self,
        signal: Signal,
        identifier: str,
        resource: PsonValue,
        payload: PsonValue,
        confirm: bool,
    ) -> bool:
        """Send; without ``confirm`` True once written (False when offline), with it True iff the
        server answers REQUEST_OK (False on REQUEST_ERROR or disconnect, DeviceTimeout if none)."""
        link = self._link
        if link is None:
            return False
        if not confirm:
            try:
                await link.send(Message(0, signal, identifier, resource, payload))
            except (ConnectionError, OSError):
                return False
            return True
        sid = self._random.randint(1, 0xFFFF)
        while sid in self._pending:
            sid = self._random.randint(1, 0xFFFF)
        try:
            reply = await self._exchange(Message(sid, signal, identifier, resource, payload))
        except (ConnectionError, OSError):
            return False
        return reply.signal == Signal.REQUEST_OK

    async def _exchange(self, message: Message) -> Message:
        link = self._link
        if link is None:
            raise ConnectionError("device is not connected")
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[message.stream_id] = future
        try:
            await link.send(message)
            async with asyncio.timeout(self.request_timeout):
                return await future
        except TimeoutError:
            raise DeviceTimeout(
                f"no reply to {message.signal!r} within {self.request_timeout} s"
            ) from None
        finally:
            if self._pending.get(message.stream_id) is future:
                del self._pending[message.stream_id]
