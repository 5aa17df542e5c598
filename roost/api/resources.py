"""Calls that reach a connected device's resources.

v2 (and the older v1 form, same semantics), ``/v2/users/{user}/devices/{device}/{resource...}``:
- ``GET .../{r}``: read an output (``{"out": value}``) or run a callback (200, empty body);
- ``POST .../{r}`` with ``{"in": value}``: write an input (200, empty) or call an input/output
  resource (``{"out": value}``); an empty body runs the resource with no input;
- ``GET .../api``: the device's resource listing; ``GET .../{r}/api``: one resource's
  ``{in?, out?}``.

v3, ``/v3/users/{user}/devices/{device}/resources[/{resource...}]``: raw JSON in and out (no
``in``/``out`` wrapper); an ``application/octet-stream`` body reaches the device as PSON bytes
(OTA firmware chunks, ``$ota/write``) with a longer default deadline; without a resource, the
flat listing of :func:`roost.devices.describe.flat_listing`.

Names that collide with the describe routes stay apart: on v2 a path ending in ``api`` is always a
description (of the resource before it, or of the device), so a resource named ``api`` is
described at ``.../api/api`` and called through v3, where ``resources/{r}`` is always a call
(over IOTMP; the legacy wire spells a description as a path ending in ``api``, so a legacy device
describes instead). A device token limited to some resources is checked on the resource each call
or description reaches, whatever its name, by :meth:`roost.api.access.Principal.may_use` (which
counts a path ending in ``api`` as the description it may be), and the listings show it only
those; both the direct path and Starlette's router run these same handlers.

Nested resources are paths (``a/b``). Each call has a deadline: ``?timeout=`` in milliseconds, by
default ``call_timeout_ms`` (``binary_call_timeout_ms`` for octet-stream bodies) and at most
``max_call_timeout_ms``; past it the answer is 504. A device that is offline, unknown, or has no
such resource gives 404, as Thinger does.

These are the hot path of the API, so each endpoint (:class:`CallEndpoint`) renders its own
answer, errors included: :meth:`roost.api.app.RestApi.direct` hands it matching requests straight
from the HTTP protocol, without ASGI (:mod:`roost.net.http`), and the same answer comes back when
Starlette routes to it (the v1 form, matched last).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from roost.api.access import DESCRIBED, Principal, authorize
from roost.api.errors import error_for
from roost.api.json import JSON_TYPE, dumps, parse_json, read_body
from roost.bus.base import DeviceKey, Operation
from roost.devices.describe import flat_listing, legacy_listing
from roost.errors import DeviceOffline, InvalidInput, NotFound
from roost.net.http import Answer
from roost.services import Services
from roost.wire.pson import PsonValue

MAX_SEGMENT = 128
MAX_DEPTH = 16
OCTET_STREAM = "application/octet-stream"
JSON_CONTENT_TYPE = (b"content-type", JSON_TYPE.encode())
EMPTY_BODY_HEADERS = ((b"content-length", b"0"),)

# What a handler answers: a JSON body, or None for a 200 with an empty body.
Handler = Callable[[Request, Services], Awaitable[bytes | None]]


class CallEndpoint:
    """A resource-call handler with its answer rendered, errors included: for the HTTP protocol's
    direct path (:meth:`answer`) and as an ASGI app (when Starlette's router gets the request)."""

    __slots__ = ("_handler",)

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def answer(self, scope: Scope, receive: Receive) -> Answer:
        request = Request(scope, receive)
        try:
            body = await self._handler(request, scope["app"].state.services)
        except Exception as exc:  # CancelledError is not an Exception: it goes on
            response = await error_for(request, exc)
            return response.status_code, response.raw_headers, bytes(response.body)
        if body is None:
            return 200, EMPTY_BODY_HEADERS, b""
        return 200, ((b"content-length", b"%d" % len(body)), JSON_CONTENT_TYPE), body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, body = await self.answer(scope, receive)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def call_v2(request: Request, services: Services) -> bytes | None:
    path = split_path(request.path_params["resource"])
    if path[-1] == DESCRIBED:  # a description, checked as the resource it describes (none: all)
        described = path[:-1]
        principal = await _authorize(request, "/".join(described) if described else None)
        listing = await _device_request(request, services, Operation.DESCRIBE, described, None)
        if not described:
            return dumps(visible_tree(legacy_listing(listing), principal))
        return dumps(listing if listing is not None else {})
    await _authorize(request, "/".join(path))
    payload: PsonValue = None
    if request.method == "POST":
        payload = _unwrap_in(await read_body(request, services.settings.max_body_bytes))
    result = await _device_request(request, services, Operation.CALL, path, payload)
    return None if result is None else dumps({"out": result})


async def call_v3(request: Request, services: Services) -> bytes | None:
    path = split_path(request.path_params["resource"])  # always a call here, even of "api"
    await _authorize(request, "/".join(path))
    payload: PsonValue = None
    binary = request.headers.get("content-type", "").startswith(OCTET_STREAM)
    if request.method == "POST":
        raw = await read_body(request, services.settings.max_body_bytes)
        payload = raw if binary else (parse_json(raw) if raw.strip() else None)
    result = await _device_request(request, services, Operation.CALL, path, payload, binary)
    return None if result is None else dumps(result)


async def list_v3(request: Request, services: Services) -> bytes | None:
    principal = await _authorize(request, None)
    listing = await _device_request(request, services, Operation.DESCRIBE, (), None)
    flat = flat_listing(listing)
    return dumps({name: entry for name, entry in flat.items() if principal.may_use(name)})


async def _authorize(request: Request, resource: str | None) -> Principal:
    """AccessDeviceResources on the device, and on ``resource`` (None: the device's listing,
    which the caller then filters with :meth:`Principal.may_use`)."""
    owner, device_id = request.path_params["user"], request.path_params["device"]
    return await authorize(request, "AccessDeviceResources", owner, device_id, resource)


def visible_tree(tree: dict[str, Any], principal: Principal, prefix: str = "") -> dict[str, Any]:
    """The part of a nested (legacy form) listing that ``principal`` may use. A resource that is
    not covered but has covered ones below it stays as a bare container (``fn`` 0), as
    :func:`roost.devices.describe.legacy_listing` shows parents IOTMP devices do not list."""
    if principal.resources is None:
        return tree
    shown: dict[str, Any] = {}
    for name, node in tree.items():
        path = prefix + name
        if principal.may_use(path):
            shown[name] = node
            continue
        below = visible_tree(node.get("/", {}), principal, path + "/")
        if below:
            shown[name] = {"al": 0, "fn": 0, "/": below}
    return shown


def split_path(resource: str) -> tuple[str, ...]:
    parts = tuple(resource.split("/"))
    if len(parts) > MAX_DEPTH:
        raise InvalidInput("invalid resource path")
    for part in parts:
        if not 0 < len(part) <= MAX_SEGMENT:
            raise InvalidInput("invalid resource path")
    return parts


async def _device_request(
    request: Request,
    services: Services,
    op: Operation,
    path: tuple[str, ...],
    payload: PsonValue,
    binary: bool = False,
) -> PsonValue:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    timeout = _timeout(request, services, binary)
    key = DeviceKey(owner, device_id)
    calls = services.metrics.calls  # counted and timed for GET /metrics: a few additions
    started = perf_counter()
    try:
        result = await services.devices.request(key, op, path, payload, timeout)
    except Exception as exc:
        calls.failed(exc, perf_counter() - started)
        offline = isinstance(exc, DeviceOffline)
        if offline and await services.store.get_device(owner, device_id) is None:
            raise NotFound(f"device {device_id!r} not found") from None
        raise
    calls.succeeded(perf_counter() - started)
    return result


def _unwrap_in(raw: bytes) -> PsonValue:
    if not raw.strip():
        return None
    body = parse_json(raw)
    if not isinstance(body, dict) or set(body) - {"in"}:
        raise InvalidInput('request body must be {"in": value}')
    value: PsonValue = body.get("in")
    return value


def _timeout(request: Request, services: Services, binary: bool) -> float:
    settings = services.settings
    # most calls have no query string: skip parsing one
    raw = request.query_params.get("timeout") if request.scope["query_string"] else None
    if raw is None:
        default = settings.binary_call_timeout_ms if binary else settings.call_timeout_ms
        return default / 1000
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= settings.max_call_timeout_ms:
        raise InvalidInput(
            f"timeout must be an integer from 1 to {settings.max_call_timeout_ms} (ms)"
        )
    return int(raw) / 1000


CALL_V2 = CallEndpoint(call_v2)
GET_POST = ["GET", "POST"]
routes = [
    Route(
        "/v2/users/{user}/devices/{device}/{resource:path}",
        CALL_V2,
        methods=GET_POST,
        name="call_v2",
    ),
    Route(
        "/v3/users/{user}/devices/{device}/resources",
        CallEndpoint(list_v3),
        methods=["GET"],
        name="list_v3",
    ),
    Route(
        "/v3/users/{user}/devices/{device}/resources/{resource:path}",
        CallEndpoint(call_v3),
        methods=GET_POST,
        name="call_v3",
    ),
]
# The v1 form shares its prefix with /v1/.../devices/{device}/stats and /tokens: matched last.
late_routes = [
    Route(
        "/v1/users/{user}/devices/{device}/{resource:path}",
        CALL_V2,
        methods=GET_POST,
        name="call_v1",
    ),
]
