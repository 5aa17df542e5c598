"""User-defined access tokens: /v1/users/{user}/tokens[/{token}] (thinger-api.md 2.13, 3.1).

A token has an id (``token``, :data:`roost.ids.ACCESS_TOKEN`, chosen by the client or generated), a
``name``, a ``description``, ``enabled``, the ``allow`` and ``deny`` permissions of the Thinger
grammar and ``expire``: when it stops working, in ms since the epoch (null or 0: never). Its value
is a JWT with ``usr``, ``jti`` (the id) and ``svr`` (the ``public_host`` setting), plus ``exp``
when it expires; only the settings are stored, and the JWT is signed again from them whenever it
is shown (``access_token`` in the answers about one token, to a login session only: a token
allowed ``ReadTokenConfig`` reads the settings without it). Every use looks the token up, so
disabling or deleting it stops it at once.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.json import json_response, read_json_object
from roost.api.paging import page_of
from roost.api.validate import described, described_changes
from roost.auth.permissions import Permissions
from roost.bus.base import Revocation, Revoked
from roost.config import public_host
from roost.errors import Conflict, InvalidInput, NotFound
from roost.services import Services
from roost.store.base import AccessToken

MAX_EXPIRE_MS = 253_402_300_799_999  # the last ms of year 9999


def token_json(token: AccessToken, services: Services | None = None) -> dict[str, Any]:
    """The token's settings; with ``services``, also its JWT as ``access_token``."""
    body: dict[str, Any] = {
        "token": token.token,
        "name": token.name,
        "description": token.description,
        "enabled": token.enabled,
        "allow": token.allow,
        "deny": token.deny,
        "expire": token.expire,
        "created": token.created,
        "modified": token.modified,
    }
    if services is not None:
        server = public_host(services.settings)
        body["access_token"] = services.signer.user_token(
            token.owner, token.token, server, token.expire, token.nonce
        )
    return body


def summary_json(token: AccessToken) -> dict[str, Any]:
    keys = ("token", "name", "description", "enabled", "expire", "created", "modified")
    full = token_json(token)
    return {key: full[key] for key in keys}


async def list_tokens(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "ListTokens", owner)
    services: Services = request.app.state.services
    tokens = await services.store.list_access_tokens(owner, page_of(request))
    return json_response([summary_json(t) for t in tokens])


async def create_token(request: Request) -> Response:
    owner = request.path_params["user"]
    (await authorize(request, "CreateToken", owner)).require_session("access tokens are created")
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    token_id = body.get("token")
    token_id = "t_" + secrets.token_hex(12) if token_id is None else token_id
    token_id = ids.validate(ids.ACCESS_TOKEN, token_id)
    allow, deny = _permissions(body.get("allow"), body.get("deny"))
    now = services.now_ms()
    token = AccessToken(
        owner=owner,
        token=token_id,
        **described(body, token_id),
        allow=allow,
        deny=deny,
        expire=_expire(body.get("expire"), now),
        created=now,
        modified=now,
    )
    try:
        await services.store.create_access_token(token)
    except Conflict:
        raise Conflict(f"token {token_id!r} already exists") from None
    return json_response(token_json(token, services))


async def read_token(request: Request) -> Response:
    owner, token_id = request.path_params["user"], request.path_params["token"]
    principal = await authorize(request, "ReadTokenConfig", owner, token_id)
    services: Services = request.app.state.services
    token = await _find(services, owner, token_id)
    # the JWT is a login session's to see: a token allowed ReadTokenConfig gets the settings only
    return json_response(token_json(token, services if principal.is_session else None))


async def update_token(request: Request) -> Response:
    owner, token_id = request.path_params["user"], request.path_params["token"]
    principal = await authorize(request, "UpdateToken", owner, token_id)
    principal.require_session("access tokens are changed")
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    if body.get("token") not in (None, token_id):
        raise InvalidInput("the token id cannot be changed")
    token = await _find(services, owner, token_id)
    changes = described_changes(body, services.now_ms())
    if "allow" in body or "deny" in body:
        changes["allow"], changes["deny"] = _permissions(
            body.get("allow", token.allow), body.get("deny", token.deny)
        )
    if "expire" in body:
        changes["expire"] = _expire(body["expire"], changes["modified"])
    updated = dataclasses.replace(token, **changes)
    await services.store.update_access_token(updated)
    await services.bus.announce(Revocation(owner, Revoked.ACCESS_TOKEN, token_id, "token changed"))
    return json_response(token_json(updated, services))


async def delete_token(request: Request) -> Response:
    owner, token_id = request.path_params["user"], request.path_params["token"]
    await authorize(request, "DeleteToken", owner, token_id)
    services: Services = request.app.state.services
    if not await services.store.delete_access_token(owner, token_id):
        raise NotFound(f"token {token_id!r} not found")
    await services.bus.announce(Revocation(owner, Revoked.ACCESS_TOKEN, token_id, "token revoked"))
    return Response(status_code=200)


async def _find(services: Services, owner: str, token_id: str) -> AccessToken:
    token = await services.store.get_access_token(owner, token_id)
    if token is None:
        raise NotFound(f"token {token_id!r} not found")
    return token


def _permissions(allow: object, deny: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validated and normalised: action lists always arrays (see Permissions.to_json)."""
    return Permissions.parse(allow, deny).to_json()


def _expire(value: object, now: int) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput("expire must be a number: ms since the epoch (null or 0: never)")
    if not now < value <= MAX_EXPIRE_MS:
        raise InvalidInput("expire must be a future time in ms since the epoch (null or 0: never)")
    return int(value)


routes = [
    Route("/v1/users/{user}/tokens", list_tokens, methods=["GET"]),
    Route("/v1/users/{user}/tokens", create_token, methods=["POST"]),
    Route("/v1/users/{user}/tokens/{token}", read_token, methods=["GET"]),
    Route("/v1/users/{user}/tokens/{token}", update_token, methods=["PUT"]),
    Route("/v1/users/{user}/tokens/{token}", delete_token, methods=["DELETE"]),
]
