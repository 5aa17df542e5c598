"""Endpoints: /v1/users/{user}/endpoints[/{endpoint}] and their calls (thinger-api.md 2.11).

An endpoint has an id (``endpoint``, :data:`roost.ids.ENDPOINT`), a ``name``, a ``description``,
``enabled``, a ``type`` and a ``config``. Type ``http_request`` is called
(:mod:`roost.endpoints.http_request` says its config: ``method``, ``url``, ``headers``
``[{key, value}]``, ``body``, ``body_type`` ``json``/``custom``); any other type (``email``,
``telegram_bot``, ``ifttt`` ...) is kept with its config as given, and a call of it is answered
501. The list leaves ``config`` out, as Thinger's does (it may hold credentials).

``POST .../call`` takes any JSON (or no body: no data) and answers once the call is done, with
the target's answer: 200 with its body when it answered 2xx (as JSON when it is JSON, else as
text), else 502 saying why (its status, or that it could not be reached after the retries). The
Node-RED node passes that answer on as its output. The same result goes out as the
``endpoint_call_response`` event. A full queue is 503 with Retry-After; a disabled endpoint
400; an endpoint of a type not called 501.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.json import json_response, parse_json, read_body, read_json_object
from roost.api.paging import page_of
from roost.api.validate import TEXT_LIMIT, described, described_changes, optional_str
from roost.endpoints.http_request import parse_config as parse_http_config
from roost.errors import Conflict, InvalidInput, NotFound, UpstreamFailed
from roost.services import Services
from roost.store.base import Endpoint

HTTP_REQUEST = "http_request"


def endpoint_json(endpoint: Endpoint, config: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "endpoint": endpoint.endpoint,
        "name": endpoint.name,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "type": endpoint.type,
    }
    if config:
        shown["config"] = endpoint.config
    return shown | {"created": endpoint.created, "modified": endpoint.modified}


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def list_endpoints(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "ListEndpoints", owner)
    listed = await _services(request).store.list_endpoints(owner, page_of(request))
    return json_response([endpoint_json(e, config=False) for e in listed])


async def create_endpoint(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "CreateEndpoint", owner)
    services = _services(request)
    body = await read_json_object(request, services.settings.max_body_bytes)
    endpoint_id = ids.validate(ids.ENDPOINT, body.get("endpoint"))
    kind = _type(body.get("type"))
    now = services.now_ms()
    endpoint = Endpoint(
        owner=owner,
        endpoint=endpoint_id,
        **described(body, endpoint_id),
        type=kind,
        config=parse_config(kind, body.get("config", {})),
        created=now,
        modified=now,
    )
    try:
        await services.store.create_endpoint(endpoint)
    except Conflict:
        raise Conflict(f"endpoint {endpoint_id!r} already exists") from None
    return json_response(endpoint_json(endpoint))


async def read_endpoint(request: Request) -> Response:
    owner, endpoint_id = request.path_params["user"], request.path_params["endpoint"]
    await authorize(request, "ReadEndpointConfig", owner, endpoint_id)
    return json_response(endpoint_json(await _find(_services(request), owner, endpoint_id)))


async def update_endpoint(request: Request) -> Response:
    owner, endpoint_id = request.path_params["user"], request.path_params["endpoint"]
    await authorize(request, "UpdateEndpoint", owner, endpoint_id)
    services = _services(request)
    body = await read_json_object(request, services.settings.max_body_bytes)
    if body.get("endpoint") not in (None, endpoint_id):
        raise InvalidInput("the endpoint id cannot be changed")
    endpoint = await _find(services, owner, endpoint_id)
    changes = described_changes(body, services.now_ms())
    kind = endpoint.type if body.get("type") is None else _type(body["type"])
    config = endpoint.config if body.get("config") is None else body["config"]
    changes |= {"type": kind, "config": parse_config(kind, config)}
    updated = dataclasses.replace(endpoint, **changes)
    await services.store.update_endpoint(updated)
    return json_response(endpoint_json(updated))


async def delete_endpoint(request: Request) -> Response:
    owner, endpoint_id = request.path_params["user"], request.path_params["endpoint"]
    await authorize(request, "DeleteEndpoint", owner, endpoint_id)
    if not await _services(request).store.delete_endpoint(owner, endpoint_id):
        raise NotFound(f"endpoint {endpoint_id!r} not found")
    return Response(status_code=200)


async def call_endpoint(request: Request) -> Response:
    owner, endpoint_id = request.path_params["user"], request.path_params["endpoint"]
    await authorize(request, "CallEndpoint", owner, endpoint_id)
    services = _services(request)
    raw = await read_body(request, services.settings.max_body_bytes)
    data = parse_json(raw) if raw.strip() else None
    result = await services.endpoints.call(owner, endpoint_id, data)
    if not result.ok:
        raise UpstreamFailed(f"endpoint {endpoint_id!r}: {result.error}")
    return answer(result.body)


def answer(body: str) -> Response:
    """The target's answer: JSON as JSON, anything else as plain text (never as the target's
    own type: HTML from a target must not run as this server's page)."""
    try:
        json.loads(body)
    except ValueError:  # the empty answer too
        headers = {"X-Content-Type-Options": "nosniff"}
        return Response(body, media_type="text/plain; charset=utf-8", headers=headers)
    return Response(body, media_type="application/json")


def _type(kind: object) -> str:
    value = optional_str({"type": kind}, "type", limit=TEXT_LIMIT)
    if not value:
        raise InvalidInput(f"type must be a string of 1 to {TEXT_LIMIT} characters")
    return value


def parse_config(kind: str, config: object) -> dict[str, Any]:
    """An endpoint's config: checked field by field for ``http_request``, any object else."""
    if kind == HTTP_REQUEST:
        return parse_http_config(config)
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    return config


async def _find(services: Services, owner: str, endpoint_id: str) -> Endpoint:
    endpoint = await services.store.get_endpoint(owner, endpoint_id)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id!r} not found")
    return endpoint


routes = [
    Route("/v1/users/{user}/endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/users/{user}/endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/users/{user}/endpoints/{endpoint}", read_endpoint, methods=["GET"]),
    Route("/v1/users/{user}/endpoints/{endpoint}", update_endpoint, methods=["PUT"]),
    Route("/v1/users/{user}/endpoints/{endpoint}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/users/{user}/endpoints/{endpoint}/call", call_endpoint, methods=["POST"]),
]
