"""A user's credentials: change the password, log out everywhere.

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

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.api.access import authorize
from roost.api.json import json_response, read_json_object
from roost.api.oauth import check_password
from roost.auth.passwords import hash_password
from roost.bus.base import Revocation, Revoked
from roost.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from roost.services import Services

PASSWORD_LENGTH = (6, 72)


async def update_password(request: Request) -> Response:
    owner = request.path_params["user"]
    principal = await authorize(request, "UpdateUserPassword", owner, owner)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    password = body.get("password")
    low, high = PASSWORD_LENGTH
    if not isinstance(password, str) or not low <= len(password) <= high:
        raise InvalidInput(f"password must be a string of {low} to {high} characters")
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
    Route("/v1/users/{user}/password", update_password, methods=["PUT"]),
    Route("/v1/users/{user}/refresh_tokens", revoke_refresh_tokens, methods=["DELETE"]),
]
