"""JSON in and out: orjson, bodies read with a size limit, device values made JSON-safe."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from roost.errors import InvalidInput, PayloadTooLarge

JSON_TYPE = "application/json"


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """JSON for any value a device or a client can produce. orjson refuses integers past 64 bits
    and lone surrogates (PSON carries negative integers down to -(2**64-1)); those go through the
    standard library, which writes them exactly (surrogates escaped)."""
    try:
        return orjson.dumps(value, default=_default)
    except orjson.JSONEncodeError:
        return json.dumps(_finite(value), default=_default, separators=(",", ":")).encode()


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null, as orjson writes them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_response(
    value: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(value), status_code=status, headers=headers, media_type=JSON_TYPE)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; InvalidInput (400) when it is empty or not JSON."""
    return parse_json(await read_body(request, limit))


def parse_json(body: bytes) -> Any:
    """Parse with the standard library, which keeps integers of any size exact (orjson turns
    the ones past 64 bits into floats); NaN and Infinity are refused as they are not JSON."""
    if not body.strip():
        raise InvalidInput("request body must be JSON")
    try:
        orjson.loads(body)  # refuses lone surrogates, which no hash or store can take as text
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # the decode errors of both parsers included
        raise InvalidInput("request body is not valid JSON") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    value = await read_json(request, limit)
    if not isinstance(value, dict):
        raise InvalidInput("request body must be a JSON object")
    return value
