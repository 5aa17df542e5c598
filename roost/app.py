"""Build Services from Settings and run Roost: the HTTP API and the device listeners.

:class:`Roost` is one running server. ``start()`` opens the store, creates the first admin if the
store is empty, binds every listener (port 0 picks a free port, read back from the attributes) and
returns once they accept connections; ``stop()`` shuts down gracefully: stop accepting, close device
sessions, wait for the HTTP server and background jobs with a timeout, then close the store.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import sys
import time
from typing import Any

import uvicorn

from roost.api.app import create_app
from roost.auth.keys import JWT_KEY_FILE, PEPPER_FILE, load_or_create_key
from roost.auth.passwords import DeviceCredentials, hash_password
from roost.auth.tokens import TokenSigner
from roost.bus.local import LocalBus
from roost.config import Settings
from roost.devices.gateway import DeviceGateway
from roost.devices.registry import Registry
from roost.net.legacy import LegacyConnection
from roost.services import Services
from roost.store.base import User
from roost.store.sqlite import SQLiteStore

log = logging.getLogger("roost")

DATABASE_FILE = "roost.db"


async def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    store = SQLiteStore(settings.data_dir / DATABASE_FILE)
    await store.open()
    registry = Registry()
    credentials = DeviceCredentials(load_or_create_key(settings.data_dir, PEPPER_FILE))
    gateway = DeviceGateway(store, registry, credentials, settings, time.time)
    return Services(
        settings=settings,
        store=store,
        registry=registry,
        bus=LocalBus(registry),
        gateway=gateway,
        signer=TokenSigner(load_or_create_key(settings.data_dir, JWT_KEY_FILE)),
        credentials=credentials,
        clock=time.time,
    )


async def ensure_admin(services: Services) -> None:
    """On an empty store, create the first admin (its password printed once if generated)."""
    if await services.store.count_users() > 0:
        return
    settings = services.settings
    password = settings.admin_password or secrets.token_urlsafe(12)
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(None, hash_password, password)
    await services.store.create_user(
        User(settings.admin_user, password_hash, "admin", services.now_ms())
    )
    log.info("created admin user %r", settings.admin_user)
    if settings.admin_password is None:
        print(
            f"Roost: created admin user {settings.admin_user!r} with password: {password}\n"
            "       (shown once; set ROOST_ADMIN_PASSWORD to choose it)",
            file=sys.stderr,
            flush=True,
        )


class Roost:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.http_port = 0
        self.device_port = 0
        self._device_server: asyncio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[Any] | None = None
        self._sweeper: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        settings = self.settings
        services = self.services = await build_services(settings)
        await ensure_admin(services)
        loop = asyncio.get_running_loop()
        gateway = services.gateway
        self._device_server = await loop.create_server(
            lambda: LegacyConnection(gateway), settings.host, settings.device_port, backlog=4096
        )
        self.device_port = self._device_server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(gateway.drop_silent_devices())
        http_socket = _bind(settings.host, settings.http_port)
        self.http_port = http_socket.getsockname()[1]
        config = uvicorn.Config(
            create_app(services),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
        )
        self._http = uvicorn.Server(config)
        self._http_task = loop.create_task(self._http.serve(sockets=[http_socket]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()  # raise what stopped it
            await asyncio.sleep(0.01)
        log.info(
            "listening on %s: HTTP port %d, device port %d (legacy); data in %s",
            settings.host,
            self.http_port,
            self.device_port,
            settings.data_dir.resolve(),
        )

    async def stop(self) -> None:
        if self._device_server is not None:
            self._device_server.close()
        if self._http is not None:
            self._http.should_exit = True
        if self.services is not None:
            await self.services.gateway.shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
        jobs = [job for job in (self._sweeper, self._http_task) if job is not None]
        await asyncio.gather(*jobs, return_exceptions=True)
        if self.services is not None:
            await self.services.store.close()
        log.info("stopped")

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set or the HTTP server ends (it handles SIGINT/SIGTERM)."""
        await self.start()
        assert self._http_task is not None
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([stopping, self._http_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            await self.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
