"""The OpenAPI document: built by calling openapi_document(), checked against all_routes()."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.routing import Route, WebSocketRoute

from roost.api.app import all_routes
from roost.api.openapi import openapi_document
from roost.net import iotmp_websocket

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}
RESOURCE_PATH = "/v2/users/{user}/devices/{device}/{resource}"
# the routes that reach a device, which may miss its deadline (504)
DEVICE_CALLS = {
    RESOURCE_PATH,
    "/v1/users/{user}/devices/{device}/{resource}",
    "/v3/users/{user}/devices/{device}/resources",
    "/v3/users/{user}/devices/{device}/resources/{resource}",
}
# the route that passes a call on to another server (an endpoint's target): a type not called
# (501), a target that failed (502), a full queue (503)
ENDPOINT_CALL = "/v1/users/{user}/endpoints/{endpoint}/call"
PUBLIC_PATHS = {
    "/oauth/token",
    "/oauth/revoke",
    "/v1/server/healthcheck",
    "/v1/server/version",
    "/openapi.json",
    "/v1/server/events",
    "/v1/server/assets",
    "/iotmp",  # a device connection: it authenticates inside the stream
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _route_operations() -> set[tuple[str, str]]:
    # /iotmp is answered below the ASGI app, by the WebSocket protocol (roost.net.iotmp_websocket)
    found = {(iotmp_websocket.PATH.decode(), "get")}
    for route in all_routes():
        assert isinstance(route, Route | WebSocketRoute)
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if isinstance(route, WebSocketRoute):  # documented as the GET that opens it
            found.add((path, "get"))
            continue
        found |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return found


def test_routes_and_document_match(doc: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in _operations(doc)}
    routes = _route_operations()
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations without a route"


def test_operations_are_complete(doc: dict[str, Any]) -> None:
    ids = []
    for path, method, op in _operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert op.get("description"), where
        ids.append(op["operationId"])
        # a success: 2xx, or 101 for the GET that opens a WebSocket
        assert any(code.startswith("2") or code == "101" for code in op["responses"]), where
        for code, response in op["responses"].items():
            assert response.get("description"), (where, code)
            if code.startswith("4"):
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, where
    assert len(ids) == len(set(ids)), "operationIds are not unique"


def test_no_server_errors_listed(doc: dict[str, Any]) -> None:
    """No 500 anywhere; the 5xx are 504, a device missing its deadline, on resource calls, and
    501/502/503 on endpoint calls."""
    for path, method, op in _operations(doc):
        server_errors = {c for c in op["responses"] if c.startswith("5")}
        allowed = {"504"} if path in DEVICE_CALLS else set()
        if path == ENDPOINT_CALL:
            allowed = {"501", "502", "503"}
        assert server_errors <= allowed, (method, path)
        for code in server_errors:
            assert op["responses"][code]["content"]["application/json"]["schema"] == ERROR_REF


def test_path_parameters_match_templates(doc: dict[str, Any]) -> None:
    for path, method, op in _operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")


def test_security(doc: dict[str, Any]) -> None:
    assert doc["security"] == [{"bearerAuth": []}]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    for path, method, op in _operations(doc):
        query = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        if path in PUBLIC_PATHS:
            assert op["security"] == [], (method, path)
            assert "authorization" not in query
        else:
            assert "security" not in op, (method, path)
            assert "authorization" in query, (method, path)
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_actions_and_shapes(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    device = "/v1/users/{user}/devices/{device}"
    assert paths["/v1/users/{user}/devices"]["post"]["summary"] == "CreateDevice"
    assert paths[device]["get"]["summary"] == "ReadDeviceStatus"
    assert paths[device + "/tokens/{id}"]["delete"]["summary"] == "DeleteDeviceToken"
    stats = paths[device + "/stats"]["get"]["responses"]["200"]["content"]
    assert set(stats) == {"application/json", "text/event-stream"}
    token = paths["/oauth/token"]["post"]["requestBody"]["content"]
    assert set(token) == {"application/x-www-form-urlencoded", "application/json"}
    resource = paths[RESOURCE_PATH]["post"]["responses"]
    assert {"400", "401", "403", "404", "413", "504"} == set(resource) - {"200"}
    schemas = doc["components"]["schemas"]
    assert set(schemas["Device"]["properties"]["connection"]["required"]) == {"active", "ts"}
    # the JWT (token, access_token) is shown to login sessions only: not always present
    assert set(schemas["DeviceToken"]["required"]) == {"id", "name", "resources", "expiration"}
    assert "token" in schemas["DeviceToken"]["properties"]
    assert "access_token" not in schemas["AccessToken"]["required"]


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield item
            else:
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_serialisable_and_refs_resolve(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert orjson.loads(orjson.dumps(doc)) == doc
    refs = set(_refs(doc))
    assert "#/components/schemas/Error" in refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]


def test_fresh_copy_each_call() -> None:
    first = openapi_document()
    first["paths"].clear()
    first["components"]["schemas"]["Error"]["properties"].clear()
    assert openapi_document()["paths"]
    assert openapi_document()["components"]["schemas"]["Error"]["properties"]
