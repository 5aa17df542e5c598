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
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.json import json_response, parse_json, read_body
from roost.bus.base import DeviceKey, Operation
from roost.devices.describe import flat_listing, legacy_listing
from roost.errors import DeviceOffline, InvalidInput, NotFound
from roost.services import Services
from roost.wire.pson import PsonValue

MAX_SEGMENT = 128
MAX_DEPTH = 16
OCTET_STREAM = "application/octet-stream"


async def call_v2(request: Request) -> Response:
    path = await _authorized_path(request)
    if path[-1] == "api":
        listing = await _device_request(request, Operation.DESCRIBE, path[:-1], None)
        if len(path) == 1:
            return json_response(legacy_listing(listing))
        return json_response(listing if listing is not None else {})
    payload: PsonValue = None
    if request.method == "POST":
        payload = _unwrap_in(await _body(request))
    result = await _device_request(request, Operation.CALL, path, payload)
    return Response(status_code=200) if result is None else json_response({"out": result})


async def call_v3(request: Request) -> Response:
    path = await _authorized_path(request)
    payload: PsonValue = None
    binary = request.headers.get("content-type", "").startswith(OCTET_STREAM)
    if request.method == "POST":
        services: Services = request.app.state.services
        raw = await read_body(request, services.settings.max_body_bytes)
        payload = raw if binary else (parse_json(raw) if raw.strip() else None)
    result = await _device_request(request, Operation.CALL, path, payload, binary)
    return Response(status_code=200) if result is None else json_response(result)


async def list_v3(request: Request) -> Response:
    await _authorize(request, None)
    listing = await _device_request(request, Operation.DESCRIBE, (), None)
    return json_response(flat_listing(listing))


async def _authorized_path(request: Request) -> tuple[str, ...]:
    path = split_path(request.path_params["resource"])
    await _authorize(request, path[0] if path[0] != "api" else None)
    return path


async def _authorize(request: Request, resource: str | None) -> None:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "AccessDeviceResources", owner, device_id, resource)


def split_path(resource: str) -> tuple[str, ...]:
    parts = tuple(resource.split("/"))
    if len(parts) > MAX_DEPTH or not all(0 < len(p) <= MAX_SEGMENT for p in parts):
        raise InvalidInput("invalid resource path")
    return parts


async def _device_request(
    request: Request,
    op: Operation,
    path: tuple[str, ...],
    payload: PsonValue,
    binary: bool = False,
) -> PsonValue:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    services: Services = request.app.state.services
    timeout = _timeout(request, services, binary)
    try:
        return await services.bus.request(DeviceKey(owner, device_id), op, path, payload, timeout)
    except DeviceOffline:
        if await services.store.get_device(owner, device_id) is None:
            raise NotFound(f"device {device_id!r} not found") from None
        raise


async def _body(request: Request) -> bytes:
    services: Services = request.app.state.services
    return await read_body(request, services.settings.max_body_bytes)


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
    raw = request.query_params.get("timeout")
    if raw is None:
        default = settings.binary_call_timeout_ms if binary else settings.call_timeout_ms
        return default / 1000
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= settings.max_call_timeout_ms:
        raise InvalidInput(
            f"timeout must be an integer from 1 to {settings.max_call_timeout_ms} (ms)"
        )
    return int(raw) / 1000


routes = [
    Route("/v2/users/{user}/devices/{device}/{resource:path}", call_v2, methods=["GET", "POST"]),
    Route("/v3/users/{user}/devices/{device}/resources", list_v3, methods=["GET"]),
    Route(
        "/v3/users/{user}/devices/{device}/resources/{resource:path}",
        call_v3,
        methods=["GET", "POST"],
    ),
]
# The v1 form shares its prefix with /v1/.../devices/{device}/stats and /tokens: matched last.
late_routes = [
    Route("/v1/users/{user}/devices/{device}/{resource:path}", call_v2, methods=["GET", "POST"]),
]
