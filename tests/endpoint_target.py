"""A real HTTP server on loopback for endpoint tests: it records each request it gets and answers
from a script (then 200 ``{"ok": true}``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection

from roost.app import Roost

from conftest import ADMIN, bearer

ENDPOINTS = f"/v1/users/{ADMIN}/endpoints"


@dataclass(frozen=True)
class Received:
    method: str
    target: str  # path and query, as sent
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"


@dataclass
class Target:
    port: int = 0
    script: list[Reply] = field(default_factory=list)
    received: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # answers wait until it is set
    failing: set[str] = field(default_factory=set)  # paths always answered 500

    def __post_init__(self) -> None:
        self.gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        raw_path = scope.get("raw_path") or scope["path"].encode()
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        target = raw_path.decode() + (f"?{query}" if query else "")
        self.received.put_nowait(Received(scope["method"], target, headers, body))
        await self.gate.wait()
        if raw_path.decode() in self.failing:
            reply = Reply(500, b"down", "text/plain")
        else:
            reply = self.script.pop(0) if self.script else Reply()
        content_type = [(b"content-type", reply.content_type.encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": content_type})
        await send({"type": "http.response.body", "body": reply.body})


@contextlib.asynccontextmanager
async def running_target(
    *script: Reply, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[Target]:
    """The target, over TLS with ``tls`` (certificate and key files)."""
    target = Target(script=list(script))
    config = uvicorn.Config(
        target,
        lifespan="off",
        log_config=None,
        access_log=False,
        ssl_certfile=None if tls is None else str(tls[0]),
        ssl_keyfile=None if tls is None else str(tls[1]),
    )
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    target.port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield target
    finally:
        server.should_exit = True
        await task


async def create_endpoint(
    http: httpx.AsyncClient, token: str, endpoint: str, config: dict[str, Any], **fields: Any
) -> None:
    body = {"endpoint": endpoint, "type": "http_request", "config": config, **fields}
    created = await http.post(ENDPOINTS, json=body, headers=bearer(token))
    assert created.status_code == 200, created.text


def events_url(server: Roost, token: str) -> str:
    return f"ws://127.0.0.1:{server.http_port}/v1/users/{ADMIN}/events?authorization={token}"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return frame


async def subscribe(ws: ClientConnection, subscription: dict[str, Any]) -> None:
    """Subscribe; return once the server has handled it (its error frame for a bad message sent
    after it has come back)."""
    await ws.send(json.dumps(subscription))
    await ws.send(json.dumps({"event": "(a|b)"}))
    assert "error" in await receive(ws)
