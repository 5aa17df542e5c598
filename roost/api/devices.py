"""The device registry: /v1/users/{user}/devices[/{device}]."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost import ids
from roost.api.access import authorize
from roost.api.json import json_response, read_json_object
from roost.api.paging import named, page_of
from roost.api.validate import optional_bool, optional_str
from roost.bus.base import DeviceKey, Revocation, Revoked
from roost.errors import Conflict, InvalidInput, NotFound
from roost.services import Services
from roost.store.base import Device

DEVICE_TYPES = ("Generic", "HTTP", "MQTT", "Virtual")
TYPES_WITH_CREDENTIALS = ("Generic", "MQTT")
CREDENTIALS_LENGTH = (6, 255)


async def device_json(device: Device, services: Services) -> dict[str, Any]:
    stats = await services.devices.stats(DeviceKey(device.owner, device.device))
    # connected: the live session's start (its store write is spawned and may not have landed)
    since = stats.connected_ts if stats.connected else device.last_connection
    return {
        "device": device.device,
        "name": device.name,
        "description": device.description,
        "type": device.type,
        "enabled": device.enabled,
        "user": device.owner,
        "created": device.created,
        "modified": device.modified,
        "connection": {"active": stats.connected, "ts": since},
    }


async def list_devices(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "ListDevices", owner)
    services: Services = request.app.state.services
    page = page_of(request)
    wanted = request.query_params.get("id")
    if wanted is None:
        devices = await services.store.list_devices(owner, page)
    else:  # the legacy filter: that device alone, if it exists (and matches name), page 0
        device = await services.store.get_device(owner, ids.validate(ids.DEVICE, wanted))
        found = device is not None and named(page.name, device.device, device.name)
        devices = [device] if found and device is not None and page.index == 0 else []
    return json_response([await device_json(d, services) for d in devices])


async def create_device(request: Request) -> Response:
    owner = request.path_params["user"]
    await authorize(request, "CreateDevice", owner)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    device_id = ids.validate(ids.DEVICE, body.get("device", body.get("device_id")))
    kind = optional_str(body, "type") or "Generic"
    if kind not in DEVICE_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(DEVICE_TYPES)}")
    credentials = optional_str(body, "credentials", "device_credentials", limit=1 << 16)
    credentials_hash = None
    if kind in TYPES_WITH_CREDENTIALS:
        credentials_hash = await _hash_credentials(services, credentials)
    now = services.now_ms()
    device = Device(
        owner=owner,
        device=device_id,
        name=optional_str(body, "name") or "",
        description=optional_str(body, "description", "device_description") or "",
        type=kind,
        credentials_hash=credentials_hash,
        enabled=optional_bool(body, "enabled") is not False,
        created=now,
        modified=now,
        last_connection=None,
    )
    try:
        await services.store.create_device(device)
    except Conflict:
        raise Conflict(f"device {device_id!r} already exists") from None
    return json_response(await device_json(device, services))


async def read_device(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "ReadDeviceStatus", owner, device_id)
    services: Services = request.app.state.services
    return json_response(await device_json(await find_device(services, owner, device_id), services))


async def update_device(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "UpdateDevice", owner, device_id)
    services: Services = request.app.state.services
    body = await read_json_object(request, services.settings.max_body_bytes)
    device = await find_device(services, owner, device_id)
    changes: dict[str, Any] = {}
    for field, names in (("name", ("name",)), ("description", ("description",))):
        value = optional_str(body, *names)
        if value is not None:
            changes[field] = value
    enabled = optional_bool(body, "enabled")
    if enabled is not None:
        changes["enabled"] = enabled
    credentials = optional_str(body, "credentials", limit=1 << 16)
    if credentials is not None:
        if device.type not in TYPES_WITH_CREDENTIALS:
            raise InvalidInput(f"a device of type {device.type} has no credentials")
        changes["credentials_hash"] = await _hash_credentials(services, credentials)
    updated = dataclasses.replace(device, modified=services.now_ms(), **changes)
    await services.store.update_device(updated, changes)  # only what this request changes
    if not updated.enabled:
        await services.devices.disconnect(DeviceKey(owner, device_id), "device disabled")
        await services.bus.announce(Revocation(owner, Revoked.DEVICE, device_id, "device disabled"))
    return json_response(await device_json(updated, services))


async def delete_device(request: Request) -> Response:
    owner, device_id = request.path_params["user"], request.path_params["device"]
    await authorize(request, "DeleteDevice", owner, device_id)
    services: Services = request.app.state.services
    key = DeviceKey(owner, device_id)
    if (await services.devices.stats(key)).connected:
        raise Conflict("device is connected: disconnect it before deleting it")
    if not await services.store.delete_device(owner, device_id):
        raise NotFound(f"device {device_id!r} not found")
    await services.devices.forget(key)
    await services.bus.announce(Revocation(owner, Revoked.DEVICE, device_id, "device deleted"))
    return Response(status_code=200)


async def find_device(services: Services, owner: str, device_id: str) -> Device:
    device = await services.store.get_device(owner, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device


async def _hash_credentials(services: Services, credentials: str | None) -> str:
    low, high = CREDENTIALS_LENGTH
    if credentials is None or not low <= len(credentials) <= high:
        raise InvalidInput(f"credentials must be a string of {low} to {high} characters")
    return await asyncio.get_running_loop().run_in_executor(
        None, services.credentials.hash, credentials
    )


routes = [
    Route("/v1/users/{user}/devices", list_devices, methods=["GET"]),
    Route("/v1/users/{user}/devices", create_device, methods=["POST"]),
    Route("/v1/users/{user}/devices/{device}", read_device, methods=["GET"]),
    Route("/v1/users/{user}/devices/{device}", update_device, methods=["PUT"]),
    Route("/v1/users/{user}/devices/{device}", delete_device, methods=["DELETE"]),
]
