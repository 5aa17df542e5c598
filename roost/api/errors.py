"""THE table from domain error to HTTP status, and the Thinger error body.

Every error response Roost sends is ``{"error": {"message": ...}}``. Anything not in the table is a
bug: it is logged with its traceback and answered with a bare 500 that reveals nothing. A client
that goes away while its body is read (starlette's ``ClientDisconnect``: it closed, or the server
evicted it as a slow pending connection) is no error: a DEBUG line, and nothing is written.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from roost.api.json import json_response
from roost.errors import (
    Conflict,
    DecodeError,
    DeviceTimeout,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RoostError,
    Unauthenticated,
    Unavailable,
    Unsupported,
    UpstreamFailed,
)

log = logging.getLogger("roost.api")

STATUS: tuple[tuple[type[RoostError], int], ...] = (
    (Unauthenticated, 401),  # includes InvalidToken
    (Forbidden, 403),
    (NotFound, 404),  # includes DeviceOffline, ResourceUnavailable (Thinger answers 404)
    (PayloadTooLarge, 413),
    (RateLimited, 429),  # answered with Retry-After
    (DeviceTimeout, 504),
    (Unsupported, 501),
    (UpstreamFailed, 502),
    (Unavailable, 503),  # answered with Retry-After
    (Conflict, 400),  # Thinger answers 400 for an existing device or a connected one on delete
    (InvalidInput, 400),
    (DecodeError, 400),
)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"error": {"message": message}}, status=status, headers=headers)


def status_of(exc: RoostError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


async def roost_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RoostError)
    status = status_of(exc)
    if status == 500:
        log.error("unmapped error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error")
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(exc, RateLimited | Unavailable):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return error_response(status, exc.message, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "not found", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, message, exc.headers)


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left mid-body: nothing to answer (uvicorn writes nothing to a closed connection,
    nor does the direct path), and nothing worth more than a line, traceback-free: anyone can
    cause it at will."""
    log.debug("client disconnected during %s %s", request.method, request.url.path)
    return Response(status_code=400)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error")


# in order: error_for takes the first that matches (Exception last)
HANDLERS = {
    RoostError: roost_error,
    HTTPException: http_error,
    ClientDisconnect: client_gone,
    Exception: unexpected_error,
}


async def error_for(request: Request, exc: Exception) -> Response:
    """The answer to ``exc`` by the table above, for endpoints outside Starlette's middleware."""
    for kind, handler in HANDLERS.items():
        if isinstance(exc, kind):
            return await handler(request, exc)
    raise AssertionError("unreachable: every Exception has a handler")
