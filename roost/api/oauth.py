"""POST /oauth/token: the password and refresh_token grants of OAuth2.

Refresh tokens rotate on every use; presenting one that was already used revokes the newer token
issued from it as well (the whole family of that login). Except a retry: a client whose answer was
lost (it crashed, the connection dropped) still holds the token it sent, now marked used. Within
``REFRESH_RETRY_S`` of that first use, and as long as no successor of it has been used, the token
is taken again, once: the client gets a new successor, and the undelivered one is retired, so that
presenting it later revokes the family like any reuse. A second retry, one past the window, or one
after a successor was used is a reuse (each retry mints an access token that outlives a revoked
family, so there is only the one).

Wrong passwords are budgeted per user name and per source address (``login_failures_per_user``
and ``login_failures_per_address`` per ``auth_failure_window`` seconds). Past either budget the
grant answers 429 with ``Retry-After`` *before* checking the password, so a right password is
refused too until the oldest failure leaves the window. Refresh grants are not limited: a refresh
token cannot be guessed, and a client retrying a stale one must not lock its address out. A
disabled user (``PUT /v1/users/{u}``) is refused with 403 once the password is found right.

``POST /oauth/revoke`` (RFC 7009; Thinger has no logout) takes ``token``, a refresh token, and
revokes its login: the token and every token rotated from it or to be. As the RFC says, a token
that is not valid (unknown, expired, already revoked) is answered 200 too; an access token is 400,
as a session ends only at its expiry (at most ``expires_in``, 2 h). No other credential is asked
for: holding the refresh token is what a logout needs.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.api.json import json_response, parse_json, read_body
from roost.auth.passwords import verify_password
from roost.auth.tokens import ACCESS_TTL_S, REFRESH_RETRY_S, REFRESH_TTL_S, new_token_id
from roost.errors import Forbidden, InvalidInput, InvalidToken, RateLimited, Unauthenticated
from roost.services import Services
from roost.store.base import RefreshToken


async def token(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await _read_form(request, services.settings.max_body_bytes)
    grant = form.get("grant_type")
    if grant == "password":
        name, password = form.get("username", ""), form.get("password", "")
        await check_password(request, name, password, "invalid username or password")
        await _require_enabled(services, name)
        return json_response(await _issue(services, name, family=None))
    if grant == "refresh_token":
        record = await _use_refresh(services, form.get("refresh_token", ""))
        await _require_enabled(services, record.user)  # disabling revoked them: and if not
        issued = await _issue(services, record.user, family=record.family, parent=record.jti)
        return json_response(issued)
    raise InvalidInput("grant_type must be 'password' or 'refresh_token'")


async def revoke(request: Request) -> Response:
    services: Services = request.app.state.services
    form = await _read_form(request, services.settings.max_body_bytes)
    token = form.get("token", "")
    if not token:
        raise InvalidInput("token is required: the refresh token to revoke")
    try:
        claims = services.signer.verify(token)
    except InvalidToken:
        return Response(status_code=200)
    jti = claims.get("jti")
    if "usr" in claims or not isinstance(jti, str):
        raise InvalidInput(
            "only a refresh token can be revoked: an access token ends at its expiry"
        )
    await services.store.revoke_refresh_family(jti)
    return Response(status_code=200)


async def _read_form(request: Request, limit: int) -> dict[str, str]:
    body = await read_body(request, limit)
    if request.headers.get("content-type", "").startswith("application/json"):
        data: Any = parse_json(body)
        if not isinstance(data, dict):
            raise InvalidInput("request body must be a JSON object")
        return {k: v for k, v in data.items() if isinstance(v, str)}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("request body is not a valid form") from None


async def check_password(request: Request, name: str, password: str, wrong: str) -> None:
    """Checks ``name``'s password within the budget of failures: RateLimited (429) when spent,
    else Unauthenticated(``wrong``) when the password is wrong (or the user unknown: the same
    work is done then)."""
    services: Services = request.app.state.services
    limiter = services.login_limiter
    address = request.client.host if request.client is not None else None
    refusal = limiter.attempt(name, address)
    if refusal is not None:
        raise RateLimited(
            f"too many failed attempts: retry in {refusal.whole_seconds} s", refusal.retry_after
        )
    user = await services.store.get_user(name) if name else None
    stored = user.password_hash if user is not None else None
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, verify_password, stored, password):
        raise Unauthenticated(wrong)
    limiter.succeeded(name, address)


async def _require_enabled(services: Services, name: str) -> None:
    user = await services.store.get_user(name)
    if user is not None and not user.enabled:
        raise Forbidden(f"user {name!r} is disabled")


async def _use_refresh(services: Services, refresh_token: str) -> RefreshToken:
    try:
        claims = services.signer.verify(refresh_token)
    except InvalidToken:
        raise InvalidToken("invalid refresh token") from None
    jti = claims.get("jti")
    record = None
    if isinstance(jti, str) and "usr" not in claims:
        record = await services.store.use_refresh_token(
            jti, services.now_ms(), REFRESH_RETRY_S * 1000
        )
    if record is None:
        raise InvalidToken("invalid refresh token")
    return record


async def _issue(
    services: Services, user: str, family: str | None, parent: str | None = None
) -> dict[str, Any]:
    now_s = int(services.clock())
    jti = new_token_id()
    await services.store.add_refresh_token(
        RefreshToken(
            jti=jti,
            user=user,
            family=family or jti,
            issued=now_s * 1000,
            expires=(now_s + REFRESH_TTL_S) * 1000,
            parent=parent,
        )
    )
    return {
        "access_token": services.signer.access_token(user, now_s),
        "expires_in": ACCESS_TTL_S,
        "refresh_token": services.signer.refresh_token(jti, now_s),
        "scope": None,
        "token_type": "bearer",
    }


routes = [
    Route("/oauth/token", token, methods=["POST"]),
    Route("/oauth/revoke", revoke, methods=["POST"]),
]
