"""Run Roost: the HTTP API and the device listeners on Services built from Settings (roost.wiring).

:class:`Roost` is one running server. ``start()`` opens the store, creates the first admin if the
store is empty, binds every listener (port 0 picks a free port, read back from the attributes) and
returns once they accept connections; ``stop()`` drains the node: stop accepting, let the HTTP
requests in flight finish, close each device session once no call is in flight on it (the devices
reconnect to another node), all within ``drain_timeout``; then the background jobs, the bus and the
store. A worker of ``roost serve --workers N`` (roost.workers) binds its ports with SO_REUSEPORT,
sharing them with the other workers.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import uvicorn

from roost.api.app import RestApi
from roost.buckets.retention import Retention
from roost.config import Settings
from roost.devices.drain import drain_sessions
from roost.devices.gateway import DeviceGateway
from roost.errors import ConfigError
from roost.first_admin import ensure_admin
from roost.net.batch import WriteBatch
from roost.net.http import BoundedHttpProtocol
from roost.net.http_admission import (
    PendingConnections,
    descriptor_share,
    device_room,
    raise_descriptor_limit,
)
from roost.net.iotmp import IotmpConnection
from roost.net.iotmp_websocket import IotmpWebSockets
from roost.net.legacy import LegacyConnection
from roost.net.tls import self_signed, server_context
from roost.net.tls_handshake import TlsHandshake, tls_connections, tls_protocol
from roost.net.uvicorn_compat import check_uvicorn
from roost.redact import redact_server_logs
from roost.services import Services
from roost.wiring import BusFactory, build_services, local_bus

log = logging.getLogger("roost")

PURGE_EVERY_S = 3600.0


async def purge_expired_refresh_tokens(services: Services, every_s: float) -> None:
    """Forever, from start-up: forget refresh tokens past their expiry (each refresh leaves the
    used one behind), so the table holds about one row per live session."""
    while True:
        try:
            purged = await services.store.purge_refresh_tokens(services.now_ms())
        except Exception:  # the store failed: try again next time
            log.exception("purging expired refresh tokens failed")
        else:
            if purged:
                log.info("forgot %d expired refresh tokens", purged)
        await asyncio.sleep(every_s)


class Roost:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        bus: BusFactory = local_bus,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.settings = settings
        self.reuse_port = reuse_port  # a worker: its ports shared with the others (SO_REUSEPORT)
        self.clock = clock  # the wall clock of its Services (a test may move it)
        self.bus = bus  # how its Services reach devices (build_services)
        self.services: Services | None = None
        self.ports: dict[str, int] = {}  # listener name -> bound port
        self._device_servers: list[asyncio.Server] = []
        self._http_sockets: dict[str, socket.socket] = {}  # bound, not yet served
        self._http: list[tuple[uvicorn.Server, asyncio.Task[Any]]] = []
        self._jobs: list[asyncio.Task[Any]] = []  # background work, cancelled at stop
        self._writes: WriteBatch | None = None  # the device connections' (roost.net.batch)
        self._pending: PendingConnections | None = None  # HTTP ones without a request yet
        self._handshakes: set[TlsHandshake] = set()  # on the device TLS ports, in progress
        self.retention: Retention | None = None  # deletes expired bucket points, among _jobs

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def device_port(self) -> int:
        return self.ports["legacy"]

    @property
    def iotmp_port(self) -> int:
        return self.ports["iotmp"]

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        check_uvicorn()  # before anything is bound or written: a missing hook stops the start
        redact_server_logs()
        settings = self.settings
        # Connections that have proved nothing, HTTP ones without a request and device ones
        # authenticating, take at most a quarter of the open files each: a flood of them leaves
        # half to the devices that are in, the database and the requests being answered.
        descriptors = raise_descriptor_limit()
        self._pending = PendingConnections(
            descriptor_share(settings.http_max_pending, descriptors),
            settings.http_max_pending_per_address,
            settings.trusted_proxies,
        )
        services = self.services = await build_services(settings, self.clock, self.bus)
        authenticating = descriptor_share(settings.max_unauthenticated, descriptors)
        if authenticating < settings.max_unauthenticated:
            log.info(
                "at most %d device connections authenticating (a quarter of %d open files)",
                authenticating,
                descriptors,
            )
        services.gateway.admission.limit = authenticating
        services.gateway.admission.room = device_room(descriptors, self._pending.limit)
        self._writes = WriteBatch(asyncio.get_running_loop())
        tls = self._tls_files()
        context = server_context(*tls) if tls is not None else None
        # every port is taken before anything runs: one in use stops the start with nothing done
        self._http_sockets["http"] = self._bind("http", settings.http_port)
        if tls is not None:
            self._http_sockets["https"] = self._bind("https", settings.https_port)
        await self._listen_devices("legacy", LegacyConnection, settings.device_port)
        await self._listen_devices("iotmp", IotmpConnection, settings.iotmp_port)
        if context is not None:
            await self._listen_devices(
                "legacy_tls", LegacyConnection, settings.device_tls_port, context
            )
            await self._listen_devices(
                "iotmp_tls", IotmpConnection, settings.iotmp_tls_port, context
            )
        await ensure_admin(services)
        await services.feeds.start()
        await services.exports.recover()  # exports a previous run left unfinished: failed
        loop = asyncio.get_running_loop()
        self.retention = Retention(
            services.store, services.clock, settings.bucket_retention_interval
        )
        self._jobs = [
            loop.create_task(services.gateway.drop_silent_devices()),
            loop.create_task(purge_expired_refresh_tokens(services, PURGE_EVERY_S)),
            loop.create_task(self.retention.run()),
        ]
        await self._serve_http("http")
        if tls is not None:
            await self._serve_http("https", tls)
        log.info(
            "listening on %s: %s; data in %s",
            settings.host,
            ", ".join(f"{name} port {port}" for name, port in self.ports.items()),
            settings.data_dir.resolve(),
        )

    def _tls_files(self) -> tuple[Path, Path] | None:
        settings = self.settings
        if settings.tls_cert is not None and settings.tls_key is not None:
            return settings.tls_cert, settings.tls_key
        if settings.tls_cert is not None or settings.tls_key is not None:
            raise ConfigError("TLS needs both tls_cert and tls_key")
        if settings.tls_self_signed:
            return self_signed(settings.data_dir, settings.host)
        return None

    async def _listen_devices(
        self,
        name: str,
        connection: Callable[[DeviceGateway, WriteBatch], asyncio.Protocol],
        port: int,
        context: ssl.SSLContext | None = None,
    ) -> None:
        assert self.services is not None and self._writes is not None
        gateway, writes = self.services.gateway, self._writes
        host = self.settings.host

        def device() -> Any:
            return connection(gateway, writes)

        protocol: Callable[[], asyncio.BaseProtocol] = device
        if context is not None:
            # not create_server(ssl=...), which makes the protocol once the handshake is done: a
            # connection counts as authenticating from its TCP accept, and has auth_timeout for
            # its handshake and authentication together (roost.net.tls_handshake)
            protocol = tls_connections(
                device, context, self.settings.auth_timeout, gateway.admission, self._handshakes
            )
        try:
            server = await asyncio.get_running_loop().create_server(
                protocol, host, port, backlog=4096, reuse_port=self.reuse_port or None
            )
        except OSError as exc:
            raise _listen_error(LISTENER_SETTINGS[name], host, port, exc) from None
        self._device_servers.append(server)
        self.ports[name] = server.sockets[0].getsockname()[1]

    def _bind(self, name: str, port: int) -> socket.socket:
        host = self.settings.host
        try:
            sock = _bind(host, port, self.reuse_port)
        except OSError as exc:
            raise _listen_error(LISTENER_SETTINGS[name], host, port, exc) from None
        self.ports[name] = sock.getsockname()[1]
        return sock

    async def _serve_http(self, name: str, tls: tuple[Path, Path] | None = None) -> None:
        assert self.services is not None
        sock = self._http_sockets.pop(name)
        api = RestApi(self.services)
        # resource calls take the protocol's direct path (roost.net.http), the rest is ASGI
        header_timeout = self.settings.http_header_timeout
        http = partial(
            BoundedHttpProtocol,
            direct=api.direct,
            pending=self._pending,
            header_timeout=header_timeout,
        )
        protocol: Callable[..., asyncio.Protocol] = http
        if tls is not None:
            # not uvicorn's TLS (no handshake timeout, a connection uncounted until its handshake
            # is done): each connection is pending from its TCP accept, and has header_timeout
            # for its handshake and first head together (roost.net.tls_handshake)
            protocol = tls_protocol(http, server_context(*tls), header_timeout, self._pending)
        # X-Forwarded-For/-Proto only from the listed proxies; never from FORWARDED_ALLOW_IPS
        proxies = list(self.settings.trusted_proxies)
        config = uvicorn.Config(
            api,
            log_config=None,
            access_log=False,
            lifespan="off",
            # the requests in flight, when it stops (whole seconds: uvicorn's type), a second past
            # drain_timeout: at drain_timeout the endpoint calls still under way are answered
            # 503 (stop), so that no request is cut without an answer
            timeout_graceful_shutdown=math.ceil(self.settings.drain_timeout) + 1,
            server_header=False,
            http=cast(type[asyncio.Protocol], protocol),
            # /iotmp is served by roost.net.iotmp_websocket, other WebSockets by uvicorn's own
            ws=cast(type[asyncio.Protocol], IotmpWebSockets(self.services.gateway, self._writes)),
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies,
        )
        server = uvicorn.Server(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
        self._http.append((server, task))
        while not server.started:
            if task.done():
                task.result()  # raise what stopped it
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        served = bool(self._http)  # else a start that failed: its error is all there is to say
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_timeout
        for listener in self._device_servers:
            listener.close()
        for handshake in list(self._handshakes):
            handshake.shutdown()
        for sock in self._http_sockets.values():  # bound, never served: the start failed
            sock.close()
        self._http_sockets.clear()
        for server, _ in self._http:
            server.should_exit = True
        # Draining: the HTTP servers stop accepting and finish the requests in flight (uvicorn's
        # graceful shutdown, within drain_timeout) while the device sessions and the bus still
        # serve them; then each session closes once no call (from any node) is in flight on it.
        http_drained = asyncio.gather(*(task for _, task in self._http), return_exceptions=True)
        await asyncio.wait((http_drained,), timeout=max(0.0, deadline - loop.time()))
        if self.services is not None:
            await self.services.endpoints.close()  # calls waiting or still under way: 503 now
        await http_drained
        if self.services is not None:
            await self.services.feeds.stop()  # before the sessions close: their streams stop
            if served:
                await drain_sessions(self.services.registry, deadline, "server shutting down")
            await self.services.gateway.shutdown()
            await self.services.exports.close()
        for job in self._jobs:
            job.cancel()
        jobs = [*self._jobs, *(task for _, task in self._http)]
        await asyncio.gather(*jobs, return_exceptions=True)
        if self.services is not None:
            await self.services.bus.close()
            await self.services.store.close()
        self._device_servers, self._http, self._jobs = [], [], []
        if served:
            log.info("stopped")

    async def run_until(
        self, stop: asyncio.Event, started: Callable[[], None] | None = None
    ) -> None:
        """Serve until ``stop`` is set or the HTTP server ends (it handles SIGINT/SIGTERM);
        ``started`` is told once every listener accepts connections."""
        await self.start()
        if started is not None:
            started()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            waiting = [stopping, *(task for _, task in self._http)]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.stop()


# the setting that gives each listener its port, as errors name it
LISTENER_SETTINGS = {
    "http": "http_port",
    "https": "https_port",
    "legacy": "device_port",
    "iotmp": "iotmp_port",
    "legacy_tls": "device_tls_port",
    "iotmp_tls": "iotmp_tls_port",
}


def _listen_error(setting: str, host: str, port: int, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"setting 'host': {host!r} cannot be used: {reason}")
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(f"{setting} {port} is already in use")
    return ConfigError(f"{setting} {port}: cannot listen on {host}: {reason}")


def _bind(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # a worker: the kernel spreads the connections over the workers' sockets
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
