"""The Python device: resources, the reconnect loop and the device -> server calls.

:class:`Device` is what both protocols share; each connection is a
:class:`~roost.device.link.Link` driven by the protocol's dialect (``legacy.py``, ``iotmp.py``).
The protocol is chosen per device: ``Device(..., protocol="iotmp")``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections import Counter, deque
from collections.abc import Sequence
from typing import Literal, Protocol

from roost.device.iotmp import IotmpDialect
from roost.device.legacy import LegacyDialect
from roost.device.link import Link
from roost.device.resources import (
    InOutFn,
    OutputFn,
    Resource,
    RunFn,
    SetterFn,
    split_path,
)
from roost.errors import DecodeError, InvalidInput, NotFound
from roost.wire.iotmp import Service
from roost.wire.pson import PsonValue

log = logging.getLogger(__name__)

ResourcePath = str | Sequence[str]
ProtocolName = Literal["legacy", "iotmp"]


class _Session(Protocol):
    """What the device needs of a :class:`Link`, whatever its frame type."""

    close_reason: str

    async def authenticate(self) -> bool: ...
    async def serve(self) -> None: ...
    async def close(self) -> None: ...
    async def push(self, node: Resource, payload: PsonValue) -> bool: ...
    async def call(
        self, service: Service, target: PsonValue, payload: PsonValue, confirm: bool
    ) -> tuple[bool, PsonValue]: ...


class Device:
    """A device with resources that connects to a Thinger-compatible server.

    ``protocol`` is ``"legacy"`` (the Thinger protocol of the Arduino library, port 25200) or
    ``"iotmp"`` (IOTMP as IOTMP-Linux speaks it, port 25204); ``port`` defaults accordingly.
    ``fallbacks``: more ``(host, port)`` of the same system (other Roost nodes), tried in turn
    when the current one cannot be reached.
    """

    def __init__(
        self,
        user: str,
        device: str,
        credentials: str,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        protocol: ProtocolName = "legacy",
        reconnect_delay: float = 5.0,
        keepalive_interval: float = 60.0,
        request_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        history: int = 256,
        fallbacks: Sequence[tuple[str, int]] = (),
    ) -> None:
        if protocol == "legacy":
            self._dialect: LegacyDialect | IotmpDialect = LegacyDialect()
        elif protocol == "iotmp":
            self._dialect = IotmpDialect()
        else:
            raise InvalidInput(f"unknown device protocol {protocol!r} (legacy or iotmp)")
        self.protocol = protocol
        self.user = user
        self.device = device
        self.credentials = credentials
        self.host = host
        self.port = self._dialect.default_port if port is None else port
        self.servers = [(host, self.port), *fallbacks]  # host and port: the current one
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
        self.received: deque[object] = deque(maxlen=history)  # frames other than keep-alives
        self.signal_counts: Counter[int] = Counter()  # by legacy signal / IOTMP message type
        self.keepalives_sent = 0
        self.keepalives_received = 0
        self._link: _Session | None = None
        self._runner: asyncio.Task[None] | None = None

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
        return self.signal_counts[self._dialect.start_stream_kind]

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

    def _next_server(self) -> None:
        servers, current = self.servers, (self.host, self.port)
        if len(servers) > 1:
            index = servers.index(current) if current in servers else -1
            self.host, self.port = servers[(index + 1) % len(servers)]

    def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Session:
        if isinstance(self._dialect, LegacyDialect):
            return Link(self, self._dialect, reader, writer)
        return Link(self, self._dialect, reader, writer)

    async def _session(self) -> None:
        try:
            async with asyncio.timeout(self.request_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl)
        except (OSError, TimeoutError) as exc:  # refused, unreachable, TLS handshake, no answer
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "device %s/%s: cannot connect to %s port %d: %s",
                self.user,
                self.device,
                self.host,
                self.port,
                str(exc) or "no answer in time",
            )
            self._next_server()
            return
        link = self._connect(reader, writer)
        try:
            if not await link.authenticate():
                self.auth_failed = True
                self.auth_failures += 1
                self.last_error = "authentication failed"
                log.warning("device %s/%s: authentication failed", self.user, self.device)
                return
            self.auth_failed = False
            self._link = link
            self.connect_count += 1
            self.connected.set()
            await link.serve()
            self.last_error = link.close_reason
            log.info("device %s/%s: %s", self.user, self.device, link.close_reason)
        finally:
            if self._link is link:
                self._link = None
            self.connected.clear()
            self.root.close_streams()
            await link.close()

    # -- device -> server -------------------------------------------------------------------------

    async def stream(self, path: ResourcePath, payload: PsonValue = None) -> bool:
        """Push the resource's current value (or ``payload``) on the streams the server opened on
        ``path`` (legacy: its stream, as a STREAM_EVENT; IOTMP: its event streams, the ones
        opened without an interval); False when there is none or the device is offline."""
        node = self.root.find(split_path(path))
        link = self._link
        if node is None or link is None:
            return False
        return await link.push(node, payload)

    async def write_bucket(self, bucket: str, data: PsonValue, *, confirm: bool = False) -> bool:
        return await self._call(Service.WRITE_BUCKET, bucket, data, confirm)

    async def call_endpoint(
        self, endpoint: str, data: PsonValue = None, *, confirm: bool = False
    ) -> bool:
        return await self._call(Service.CALL_ENDPOINT, endpoint, data, confirm)

    async def call_device(
        self, device: str, resource: str, data: PsonValue = None, *, confirm: bool = False
    ) -> bool:
        return await self._call(Service.CALL_DEVICE, [device, resource], data, confirm)

    async def ask_device(self, device: str, resource: str, data: PsonValue = None) -> PsonValue:
        """Call another device's resource (of the same user) through the server and return its
        reply (None when it has none): what ``call_device(..., confirm=True)`` waits for.

        Raises ConnectionError when offline or disconnected, DeviceTimeout without a reply,
        NotFound when the server refuses (target offline or not ours, unknown resource...).
        """
        link = self._link
        if link is None:
            raise ConnectionError("device is not connected")
        ok, payload = await link.call(Service.CALL_DEVICE, [device, resource], data, True)
        if not ok:
            reason = payload.get("error") if isinstance(payload, dict) else None
            why = reason if isinstance(reason, str) else "no reason given"
            raise NotFound(f"call of {device}/{resource} refused by the server: {why}")
        return payload

    async def set_property(self, prop: str, data: PsonValue, *, confirm: bool = False) -> bool:
        return await self._call(Service.SET_DEVICE_PROPERTY, prop, data, confirm)

    async def get_property(self, prop: str) -> PsonValue:
        """Ask the server for a property (legacy: with stream id 0, as the official client does).

        Raises ConnectionError when offline or disconnected, DeviceTimeout without a reply,
        NotFound when the server refuses.
        """
        link = self._link
        if link is None:
            raise ConnectionError("device is not connected")
        ok, payload = await link.call(Service.READ_DEVICE_PROPERTY, prop, None, True)
        if not ok:
            raise NotFound(f"property {prop!r} refused by the server")
        return payload

    async def _call(
        self, service: Service, target: PsonValue, payload: PsonValue, confirm: bool
    ) -> bool:
        """Without ``confirm`` True once written (False when offline); with it True iff the server
        accepts (False on refusal or disconnect, DeviceTimeout when it does not answer)."""
        link = self._link
        if link is None:
            return False
        try:
            ok, _ = await link.call(service, target, payload, confirm)
        except (ConnectionError, OSError):
            return False
        return ok
