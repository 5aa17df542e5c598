"""Device properties: /v3/users/{user}/devices/{device}/properties[/{property}] (thinger-api.md
2.8). A property is ``{property, name, description, type, value, created, modified}``; ``value``
is any JSON value a device can be sent in one frame (roost.devices.properties). The device reads
and writes the same records over its own connection (legacy flags 11/12, IOTMP services 1/2).

Choices where the reference is silent: POST takes one object (answered with the property) or an
array (answered with the list, every item checked before any is stored); an existing id is 400.
PUT needs ``value`` and replaces the fields it carries; PATCH changes only the fields it
carries; both answer 404 for a missing property, as the Node-RED node expects (it lists, then
POSTs or PUTs). ``perm`` and ``form`` (product profiles) are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.json import json_response, read_json
from roost.api.validate import optional_str
from roost.bus import events
from roost.bus.base import DeviceKey
from roost.devices.properties import checked_value
from roost.errors import InvalidInput, NotFound
from roost.services import Services
from roost.store.base import DeviceProperty

PROPERTY_TYPES = ("", "configuration")
MAX_BATCH = 1000  # items of one POST


def property_json(prop: DeviceProperty) -> dict[str, Any]:
    return {
        "property": prop.property,
        "name": prop.name,
        "description": prop.description,
        "type": prop.type,
        "value": prop.value,
        "created": prop.created,
        "modified": prop.modified,
    }


def _path(request: Request) -> tuple[str, str]:
    return request.path_params["user"], request.path_params["device"]


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _existing_device(services: Services, owner: str, device: str) -> None:
    if await services.store.get_device(owner, device) is None:
        raise NotFound(f"device {device!r} not found")


def _fields(body: dict[str, Any], services: Services) -> dict[str, Any]:
    """The fields of a property that ``body`` carries, checked."""
    fields: dict[str, Any] = {}
    for name in ("name", "description"):
        text = optional_str(body, name)
        if text is not None:
            fields[name] = text
    kind = body.get("type")
    if kind is not None:
        if kind not in PROPERTY_TYPES:
            raise InvalidInput('type must be "" or "configuration"')
        fields["type"] = kind
    if "value" in body:
        fields["value"] = checked_value(body["value"], services.settings.max_frame_bytes)
    return fields


def _new_property(owner: str, device: str, item: Any, services: Services) -> DeviceProperty:
    if not isinstance(item, dict):
        raise InvalidInput("each property must be a JSON object")
    prop_id = ids.validate(ids.PROPERTY, item.get("property"))
    if "value" not in item:
        raise InvalidInput("value is required")
    now = services.now_ms()
    fields = {"name": "", "description": "", "type": ""} | _fields(item, services)
    return DeviceProperty(owner, device, prop_id, created=now, modified=now, **fields)


async def list_properties(request: Request) -> Response:
    owner, device = _path(request)
    await authorize(request, "ListDeviceProperties", owner, device)
    services = _services(request)
    await _existing_device(services, owner, device)
    found = await services.store.list_device_properties(owner, device)
    return json_response([property_json(p) for p in found])


async def create_properties(request: Request) -> Response:
    owner, device = _path(request)
    await authorize(request, "CreateDeviceProperty", owner, device)
    services = _services(request)
    body = await read_json(request, services.settings.max_body_bytes)
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_BATCH:
        raise InvalidInput(f"an array of 1 to {MAX_BATCH} properties, or one property")
    created = [_new_property(owner, device, item, services) for item in items]
    if len({p.property for p in created}) < len(created):
        raise InvalidInput("a property id appears twice")
    await _existing_device(services, owner, device)
    for prop in created:
        await services.store.create_device_property(prop, services.settings.max_device_properties)
    for prop in created:
        _announce(services, prop)
    answer = [property_json(p) for p in created]
    return json_response(answer if isinstance(body, list) else answer[0])


def _announce(services: Services, prop: DeviceProperty) -> None:
    """``device_property_update`` for the user's events sockets (roost.api.events)."""
    key = DeviceKey(prop.owner, prop.device)
    event = events.device_property_update(key, prop.property, prop.value, prop.modified)
    services.bus.publish(event)


async def _target(request: Request, action: str) -> tuple[Services, str, str, str]:
    owner, device = _path(request)
    await authorize(request, action, owner, device)
    prop_id = ids.validate(ids.PROPERTY, request.path_params["property"])
    return _services(request), owner, device, prop_id


async def _find(services: Services, owner: str, device: str, prop_id: str) -> DeviceProperty:
    prop = await services.store.get_device_property(owner, device, prop_id)
    if prop is None:
        raise NotFound(f"property {prop_id!r} not found")
    return prop


async def read_property(request: Request) -> Response:
    services, owner, device, prop_id = await _target(request, "ReadDeviceProperty")
    return json_response(property_json(await _find(services, owner, device, prop_id)))


async def _update(request: Request, whole: bool) -> Response:
    services, owner, device, prop_id = await _target(request, "UpdateDeviceProperty")
    body = await read_json(request, services.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    if whole and "value" not in body:
        raise InvalidInput("value is required")
    fields = _fields(body, services)
    prop = await _find(services, owner, device, prop_id)
    updated = dataclasses.replace(prop, modified=services.now_ms(), **fields)
    await services.store.update_device_property(updated)
    _announce(services, updated)
    return json_response(property_json(updated))


async def replace_property(request: Request) -> Response:
    return await _update(request, whole=True)


async def patch_property(request: Request) -> Response:
    return await _update(request, whole=False)


async def delete_property(request: Request) -> Response:
    services, owner, device, prop_id = await _target(request, "DeleteDeviceProperty")
    if not await services.store.delete_device_property(owner, device, prop_id):
        raise NotFound(f"property {prop_id!r} not found")
    return Response(status_code=200)


COLLECTION = "/v3/users/{user}/devices/{device}/properties"
ITEM = COLLECTION + "/{property}"
routes = [
    Route(COLLECTION, list_properties, methods=["GET"]),
    Route(COLLECTION, create_properties, methods=["POST"]),
    Route(ITEM, read_property, methods=["GET"]),
    Route(ITEM, replace_property, methods=["PUT"]),
    Route(ITEM, patch_property, methods=["PATCH"]),
    Route(ITEM, delete_property, methods=["DELETE"]),
]
