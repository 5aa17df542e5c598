"""Calls that reach a connected device: /v2/users/{user}/devices/{device}/{resource...}.

- ``GET .../{r}``: read an output (``{"out": value}``) or run a callback (200, empty body);
- ``POST .../{r}`` with ``{"in": value}``: write an input (200, empty) or call an input/output
  resource (``{"out": value}``); an empty body runs the resource with no input;
- ``GET .../api``: the device's resource listing; ``GET .../{r}/api``: one resource's
  ``{in?, out?}``.

Nested resources are paths (``a/b``). Each call has a deadline: ``?timeout=`` in milliseconds, by
default ``call_timeout_ms`` and at most ``max_call_timeout_ms``; past it the answer is 504.
A device that is offline, unknown, or has no such resource gives 404, as Thinger does.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.json import json_response, parse_json, read_body
from roost.devices.session import DeviceKey, Operation
from roost.errors import DeviceOffline, InvalidInput, NotFound
from roost.services import Services
from roost.wire.pson import PsonValue

MAX_SEGMENT = 128
MAX_DEPTH = 16


async def call_resource(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    path = _split(request.path_params["resource"])
    describe = path[-1] == "api"
    if describe:
        path = path[:-1]
    await authorize(request, "AccessDeviceResources", owner, device_id, path[0] if path else None)
    services: Services = request.app.state.services
    payload: PsonValue = None
    if request.method == "POST" and not describe:
        payload = await _input(request, services.settings.max_body_bytes)
    op = Operation.DESCRIBE if describe else Operation.CALL
    key = DeviceKey(owner, device_id)
    try:
        result = await services.bus.request(key, op, path, payload, _timeout(request, services))
    except DeviceOffline:
        if await services.store.get_device(owner, device_id) is None:
            raise NotFound(f"device {device_id!r} not found") from None
        raise
    if describe:
        return json_response(result if result is not None else {})
    if result is None:
        return Response(status_code=200)
    return json_response({"out": result})


def _split(resource: str) -> tuple[str, ...]:
    parts = tuple(resource.split("/"))
    if len(parts) > MAX_DEPTH or not all(0 < len(p) <= MAX_SEGMENT for p in parts):
        raise InvalidInput("invalid resource path")
    return parts


async def _input(request: Request, limit: int) -> PsonValue:
    raw = await read_body(request, limit)
    if not raw.strip():
        return None
    body = parse_json(raw)
    if not isinstance(body, dict) or set(body) - {"in"}:
        raise InvalidInput('request body must be {"in": value}')
    value: PsonValue = body.get("in")
    return value


def _timeout(request: Request, services: Services) -> float:
    settings = services.settings
    raw = request.query_params.get("timeout")
    if raw is None:
        return settings.call_timeout_ms / 1000
    if not raw.isdigit() or not 0 < int(raw) <= settings.max_call_timeout_ms:
        raise InvalidInput(
            f"timeout must be an integer from 1 to {settings.max_call_timeout_ms} (ms)"
        )
    return int(raw) / 1000


routes = [
    Route(
        "/v2/users/{user}/devices/{device}/{resource:path}",
        call_resource,
        methods=["GET", "POST"],
    ),
]
