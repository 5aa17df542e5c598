"""Device tokens: /v1/users/{user}/devices/{device}/tokens[/{id}].

A device token is a JWT bound to one device, optionally to a list of its resources and an expiry.
Only its claims are stored; listing re-signs them, which gives back the same JWT (``token``) to a
login session; any other caller allowed ``ListDeviceTokens`` gets the settings without it.

A device token is created by a login session only (of the owner, or of an admin), as access
tokens are: a token allowed ``CreateDeviceToken`` could otherwise mint one reaching resources it
is itself denied, or one that outlives its own revocation.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.devices import find_device
from roost.api.json import json_response, read_json_object
from roost.api.paging import page_of
from roost.api.validate import optional_str
from roost.auth.tokens import new_token_id
from roost.bus.base import Revocation, Revoked
from roost.errors import InvalidInput, NotFound
from roost.services import Services
from roost.store.base import DeviceToken

MAX_RESOURCES = 256


def token_json(token: DeviceToken, services: Services | None = None) -> dict[str, Any]:
    """The token's settings; with ``services``, also its JWT as ``token``."""
    body: dict[str, Any] = {"id": token.id, "name": token.name}
    if services is not None:
        body["token"] = services.signer.device_token(token)
    body["resources"] = list(token.resources) if token.resources is not None else None
    body["expiration"] = token.expires
    return body


async def list_tokens(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    principal = await authorize(request, "ListDeviceTokens", owner, device_id)
    services: Services = request.app.state.services
    page = page_of(request)
    await find_device(services, owner, device_id)
    tokens = await services.store.list_device_tokens(owner, device_id, page)
    signer = services if principal.is_session else None  # the JWTs are a login session's only
    return json_response([token_json(t, signer) for t in tokens])


async def create_token(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    creator = await authorize(request, "CreateDeviceToken", owner, device_id)
    creator.require_session("device tokens are created")
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    await find_device(services, owner, device_id)
    name = optional_str(body, "token_name", "name", limit=128)
    if not name:
        raise InvalidInput("token_name is required")
    now = services.now_ms()
    token = DeviceToken(
        id=new_token_id(),
        owner=owner,
        device=device_id,
        name=name,
        resources=_resources(body.get("token_resources")),
        expires=_expiration(body.get("token_expiration"), now),
        created=now,
    )
    await services.store.create_device_token(token)
    return json_response(token_json(token, services))


async def delete_token(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "DeleteDeviceToken", owner, device_id)
    token_id = ids.validate(ids.DEVICE_TOKEN, request.path_params["id"])
    services: Services = request.app.state.services
    if not await services.store.delete_device_token(owner, device_id, token_id):
        raise NotFound("token not found")
    await services.bus.announce(Revocation(owner, Revoked.DEVICE_TOKEN, token_id))
    return Response(status_code=200)


def _resources(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_RESOURCES
        or not all(isinstance(r, str) and 0 < len(r) <= 128 for r in value)
    ):
        raise InvalidInput("token_resources must be a list of resource names")
    return tuple(value)


def _expiration(value: Any, now: int) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= now:
        raise InvalidInput("token_expiration must be a future time in ms since the epoch")
    return value


routes = [
    Route("/v1/users/{user}/devices/{device}/tokens", list_tokens, methods=["GET"]),
    Route("/v1/users/{user}/devices/{device}/tokens", create_token, methods=["POST"]),
    Route("/v1/users/{user}/devices/{device}/tokens/{id}", delete_token, methods=["DELETE"]),
]
