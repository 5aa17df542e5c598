"""The users of the server, and a user's credentials.

- ``GET /v1/users`` (ListUsers; the list conventions of :mod:`paging`) and ``POST /v1/users``
  (CreateUser: ``user``, ``password``, ``role`` user|admin, ``enabled``; Thinger's ``email`` and
  ``verified`` are accepted and not kept) are for administrators' login sessions only
  (:func:`authorize_admin`); ``GET /v1/users/{user}`` (ReadUserConfig) answers a user's own
  record, or any to an admin; ``PUT /v1/users/{user}`` (UpdateUser: ``role``, ``enabled``) is
  admin-only, and an admin cannot demote or disable themselves. A user is
  ``{user, role, enabled, created}``. Disabling revokes every refresh token of the user and ends
  their open streams; a disabled user cannot log in (403). Their access tokens already issued
  run until they expire (sessions, at most 2 h) or are deleted (tokens), their devices stay.

- ``PUT /v1/users/{user}/password`` (Thinger's UpdateUserPassword) with
  ``{"password": new, "current_password": old}`` sets a new password (6 to 72 characters) and
  revokes every refresh token of the user. Changing one's own password needs the current one
  (a stolen access token alone cannot take the account over); an admin changing another user's
  does not. A wrong current password counts against the login budget (see :mod:`oauth`).
- ``DELETE /v1/users/{user}/refresh_tokens`` (Roost's own action ``DeleteUserRefreshTokens``;
  Thinger has no such endpoint) revokes every refresh token of the user: every login ends when
  its access token expires (at most 2 h later), as access tokens are checked without the database.

Both answer ``{"revoked": n}``, the number of refresh tokens that were still usable.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize, authorize_admin
from roost.api.json import json_response, read_json_object
from roost.api.oauth import check_password
from roost.api.paging import page_of
from roost.api.validate import optional_bool
from roost.auth.passwords import hash_password
from roost.bus.base import Revocation, Revoked
from roost.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from roost.services import Services
from roost.store.base import User

PASSWORD_LENGTH = (6, 72)
ROLES = ("user", "admin")


def user_json(user: User) -> dict[str, Any]:
    return {"user": user.name, "role": user.role, "enabled": user.enabled, "created": user.created}


def _password(body: dict[str, Any]) -> str:
    password = body.get("password")
    low, high = PASSWORD_LENGTH
    if not isinstance(password, str) or not low <= len(password) <= high:
        raise InvalidInput(f"password must be a string of {low} to {high} characters")
    return password


def _role(body: dict[str, Any], default: str | None) -> str | None:
    role = body.get("role", default)
    if role is not None and role not in ROLES:
        raise InvalidInput("role must be 'user' or 'admin'")
    return role


async def list_users(request: Request) -> Response:
    await authorize_admin(request, "ListUsers")
    services: Services = request.app.state.services
    users = await services.store.list_users(page_of(request))
    return json_response([user_json(user) for user in users])


async def create_user(request: Request) -> Response:
    await authorize_admin(request, "CreateUser")
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    name = ids.validate(ids.USER, body.get("user"))
    password, role = _password(body), _role(body, "user")
    enabled = optional_bool(body, "enabled")
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(None, hash_password, password)
    user = User(name, password_hash, role or "user", services.now_ms(), enabled is not False)
    try:
        await services.store.create_user(user)
    except Conflict:
        raise Conflict(f"user {name!r} already exists") from None
    return json_response(user_json(user))


async def read_user(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "ReadUserConfig", owner, owner)
    services: Services = request.app.state.services
    user = await services.store.get_user(owner)
    if user is None:
        raise NotFound(f"user {owner!r} not found")
    return json_response(user_json(user))


async def update_user(request: Request) -> Response:
    owner = request.path_params["user"]
    principal = await authorize_admin(request, "UpdateUser", owner)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    role, enabled = _role(body, None), optional_bool(body, "enabled")
    if principal.user == owner and (role == "user" or enabled is False):
        raise InvalidInput("an administrator cannot demote or disable themselves")
    if await services.store.get_user(owner) is None:
        raise NotFound(f"user {owner!r} not found")
    user = await services.store.update_user(owner, role, enabled)
    if enabled is False:
        await services.bus.announce(Revocation(owner, Revoked.USER, reason="user disabled"))
    return json_response(user_json(user))


async def update_password(request: Request) -> Response:
    owner = request.path_params["user"]
    principal = await authorize(request, "UpdateUserPassword", owner, owner)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    password = _password(body)
    if principal.user == owner:
        current = body.get("current_password")
        if not isinstance(current, str):
            raise InvalidInput("current_password is required to change your own password")
        try:
            await check_password(request, owner, current, "current password is wrong")
        except Unauthenticated as exc:
            raise Forbidden(exc.message) from None
    elif await services.store.get_user(owner) is None:
        raise NotFound(f"user {owner!r} not found")
    password_hash = await asyncio.get_running_loop().run_in_executor(None, hash_password, password)
    revoked = await services.store.set_password(owner, password_hash)
    await services.bus.announce(Revocation(owner, Revoked.SESSIONS, reason="password changed"))
    return json_response({"revoked": revoked})


async def revoke_refresh_tokens(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "DeleteUserRefreshTokens", owner, owner)
    services: Services = request.app.state.services
    if await services.store.get_user(owner) is None:
        raise NotFound(f"user {owner!r} not found")
    revoked = await services.store.revoke_refresh_tokens(owner)
    await services.bus.announce(Revocation(owner, Revoked.SESSIONS, reason="logged out everywhere"))
    return json_response({"revoked": revoked})


routes = [
    Route("/v1/users", list_users, methods=["GET"]),
    Route("/v1/users", create_user, methods=["POST"]),
    Route("/v1/users/{user}", read_user, methods=["GET"]),
    Route("/v1/users/{user}", update_user, methods=["PUT"]),
    Route("/v1/users/{user}/password", update_password, methods=["PUT"]),
    Route("/v1/users/{user}/refresh_tokens", revoke_refresh_tokens, methods=["DELETE"]),
]
