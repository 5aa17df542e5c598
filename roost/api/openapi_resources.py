"""The OpenAPI part of the v3 and v1 resource routes and of the WebSocket streams
(``resources.py``, ``streams.py``), built with the helpers of :mod:`roost.api.openapi`.

OpenAPI has no words for WebSockets: a stream is documented on the GET that opens it
(``101 Switching Protocols``), its messages in the description.
"""

from __future__ import annotations

from roost.api.openapi import (
    DEVICE,
    RESOURCE,
    RESOURCE_NOTES,
    TIMEOUT,
    USER,
    Schema,
    _body,
    _content,
    _error,
    _ok,
    _op,
    _ref,
    _t,
)

STREAMS = (
    " With `Upgrade: websocket` this URL opens a live stream instead. Send JSON text messages:"
    ' `{"resource": r, "interval": seconds, "enabled": true}` starts or retunes a stream (0:'
    ' every value the device stream carries), `{"resource": r, "enabled": false}` stops it.'
    ' The server sends `{"resource": r, "out": v}` or `{"resource": r, "in": v}` for data,'
    ' `{"device": d, "connected": bool}` when the device leaves or comes back (streams resume'
    ' by themselves) and `{"resource"?: r, "error": {"message": m}}` for a refused message.'
    " Watchers of one resource share one device stream at the fastest interval asked; slower"
    " ones are thinned. Each client has a bounded queue: one that does not keep up loses its"
    " OLDEST frames. A refused handshake is answered with the usual HTTP error."
)
UPGRADED = {"description": "Switching Protocols: the WebSocket stream is open"}
AccessDeviceResources = "AccessDeviceResources"


def resource_paths() -> dict[str, Schema]:
    device, call = [USER, DEVICE], [USER, DEVICE, RESOURCE, TIMEOUT]
    errors: dict[int, str | None] = {
        400: "Invalid resource path, timeout or body",
        404: "Device unknown or offline, or no such resource",
        413: None,
        504: None,
    }
    raw = _ok("The raw output, or an empty body", {"description": "Any JSON value"})
    raw_input = {
        "required": False,
        "content": {
            **_content({"description": "Any JSON value"}, "application/json"),
            **_content(_t("string", format="binary"), "application/octet-stream"),
        },
    }
    v2_result = _ok(
        'The output (`{"out": value}`), a description (`api`), or an empty body',
        {"anyOf": [_ref("ResourceOutput"), _ref("ResourceDescription")]},
    )
    kinds = "fn: 1 run, 2 input, 3 output, 4 input/output, 5 stream; type: the kind's name"
    entry = _t("object", properties={"fn": _t("integer"), "type": _t("string")}, description=kinds)
    listing = _ok("Every resource by its full path", _t("object", additionalProperties=entry))
    offline: dict[int, str | None] = {404: "Device unknown or offline", 504: None}
    return {
        "/v1/users/{user}/devices/{device}/{resource}": {
            "get": _op(
                "callDeviceResourceV1",
                v2_result,
                call,
                errors,
                text=(AccessDeviceResources, "The v1 form of the v2 call." + RESOURCE_NOTES),
            ),
            "post": _op(
                "postDeviceResourceV1",
                v2_result,
                call,
                errors,
                _body("ResourceInput", required=False),
                text=(AccessDeviceResources, 'The v1 form of the v2 call with `{"in": value}`.'),
            ),
        },
        "/v3/users/{user}/devices/{device}/resources": {
            "get": _upgradable(
                _op(
                    "listDeviceResources",
                    listing,
                    device,
                    offline,
                    text=(
                        AccessDeviceResources,
                        "The device's resources, by path (to a device token limited to some"
                        " resources, only those)." + STREAMS,
                    ),
                )
            ),
        },
        "/v3/users/{user}/devices/{device}/resources/{resource}": {
            "get": _op(
                "readDeviceResourceV3",
                raw,
                call,
                errors,
                text=(
                    AccessDeviceResources,
                    "Calls a resource, whatever its name (`api` too); answers its raw output JSON.",
                ),
            ),
            "post": _op(
                "postDeviceResourceV3",
                raw,
                call,
                errors,
                raw_input,
                text=(
                    AccessDeviceResources,
                    "Calls a resource with a raw JSON value, or with `application/octet-stream`"
                    " bytes that reach the device as PSON bytes (OTA chunks, `$ota/write`; the"
                    " default deadline is then `binary_call_timeout_ms`); answers the raw output.",
                ),
            ),
        },
        "/iotmp": {
            "get": _iotmp_socket(),
        },
        "/v2/users/{user}/devices/{device}": {
            "get": _upgradable(
                _op(
                    "streamDeviceV2",
                    UPGRADED,
                    device,
                    {404: "Device not found"},
                    text=(
                        AccessDeviceResources,
                        "The older live stream (WebSocket only); besides the v3 messages,"
                        ' `{"resource": r, "in": v}` writes an input.' + STREAMS,
                    ),
                ),
                only=True,
            ),
        },
    }


def _upgradable(operation: Schema, only: bool = False) -> Schema:
    """Add the 101 answer of a WebSocket handshake (``only``: the route is WebSocket only)."""
    responses = operation["responses"]
    if only:
        responses.pop("200")
    operation["responses"] = {"101": UPGRADED, **responses}
    return operation


def _iotmp_socket() -> Schema:
    operation = _upgradable(
        _op(
            "iotmpWebSocket",
            UPGRADED,
            (),
            None,
            text=(
                "IOTMP over WebSocket",
                "A device connection: the IOTMP byte stream of port 25204 in WebSocket frames,"
                " subprotocol `iotmp`. Text and binary frames alike carry IOTMP bytes (text ones"
                " need not be UTF-8, as the official client sends them); the server answers in"
                " the kind of frame the device last sent. The device authenticates with its"
                " CONNECT message, so the handshake needs no token.",
            ),
        ),
        only=True,
    )
    operation["security"] = []
    operation.pop("parameters", None)
    operation["responses"] = {
        "101": UPGRADED,
        "400": _error(400, "Not a valid WebSocket handshake"),
        "404": _error(404, "Not a WebSocket handshake"),
        "426": _error(426, "Not WebSocket version 13"),
    }
    return operation
