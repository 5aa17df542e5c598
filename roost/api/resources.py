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

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from roost.api.access import authorize
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
    path = await _authorized_path(request)
    if path[-1] == "api":
        listing = await _device_request(request, services, Operation.DESCRIBE, path[:-1], None)
        if len(path) == 1:
            return dumps(legacy_listing(listing))
        return dumps(listing if listing is not None else {})
    payload: PsonValue = None
    if request.method == "POST":
        payload = _unwrap_in(await read_body(request, services.settings.max_body_bytes))
    result = await _device_request(request, services, Operation.CALL, path, payload)
    return None if result is None else dumps({"out": result})


async def call_v3(request: Request, services: Services) -> bytes | None:
    path = await _authorized_path(request)
    payload: PsonValue = None
    binary = request.headers.get("content-type", "").startswith(OCTET_STREAM)
    if request.method == "POST":
        raw = await read_body(request, services.settings.max_body_bytes)
        payload = raw if binary else (parse_json(raw) if raw.strip() else None)
    result = await _device_request(request, services, Operation.CALL, path, payload, binary)
    return None if result is None else dumps(result)


async def list_v3(request: Request, services: Services) -> bytes | None:
    await _authorize(request, None)
    listing = await _device_request(request, services, Operation.DESCRIBE, (), None)
    return dumps(flat_listing(listing))


async def _authorized_path(request: Request) -> tuple[str, ...]:
    path = split_path(request.path_params["resource"])
    await _authorize(request, path[0] if path[0] != "api" else None)
    return path


async def _authorize(request: Request, resource: str | None) -> None:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "AccessDeviceResources", owner, device_id, resource)


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
    try:
        return await services.bus.request(DeviceKey(owner, device_id), op, path, payload, timeout)
    except DeviceOffline:
        if await services.store.get_device(owner, device_id) is None:
            raise NotFound(f"device {device_id!r} not found") from None
        raise


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
