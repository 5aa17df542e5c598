"""Public server routes: health check, version, and the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import __version__
from roost.api.json import json_response
from roost.api.openapi import openapi_document


async def healthcheck(request: Request) -> Response:
    return json_response({"status": "ok"})


async def version(request: Request) -> Response:
    return json_response({"version": __version__, "server": "roost"})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document())


routes = [
    Route("/v1/server/healthcheck", healthcheck, methods=["GET"]),
    Route("/v1/server/version", version, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
