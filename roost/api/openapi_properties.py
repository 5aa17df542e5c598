"""The OpenAPI part of device properties (``properties.py``), built with the helpers of
:mod:`roost.api.openapi`, which merges it in."""

from __future__ import annotations

from roost.api.openapi import (
    BAD_BODY,
    DEVICE,
    USER,
    Schema,
    _array,
    _body,
    _id,
    _obj,
    _ok,
    _op,
    _path_param,
    _record,
    _ref,
    _t,
)
from roost.ids import PROPERTY

PROPERTY_ID = _path_param("property", "Property id", _id(PROPERTY))
VALUE = {
    "description": "Any JSON value whose JSON text is at most `max_frame_bytes` (64 KiB) long,"
    " so that the device can be sent it; integers within 64 bits"
}
TYPE = {"enum": ["", "configuration"]}
TEXT = _t("string", maxLength=1024)
MS = "ms since the epoch"
NOTES = (
    " The device reads and writes its properties over its connection too (legacy flags 11/12,"
    " IOTMP services 1/2); a device token gets 403 here. A device holds at most"
    " `max_device_properties` (256) properties."
)
_TEXTS = {
    "listDeviceProperties": ("ListDeviceProperties", "Every property of the device, by id."),
    "createDeviceProperty": (
        "CreateDeviceProperty",
        "Creates one property (answered with it) or an array of them (answered with the list;"
        " every item is checked before any is stored). An existing id is 400.",
    ),
    "readDeviceProperty": ("ReadDeviceProperty", "One property."),
    "replaceDeviceProperty": (
        "UpdateDeviceProperty",
        "Sets the value (required) and any of name, description, type.",
    ),
    "patchDeviceProperty": (
        "UpdateDeviceProperty",
        "Changes only the fields the body carries (value, name, description, type).",
    ),
    "deleteDeviceProperty": ("DeleteDeviceProperty", "Deletes one property."),
}


def _text(op_id: str) -> tuple[str, str]:
    summary, description = _TEXTS[op_id]
    return summary, description + NOTES


def property_schemas() -> dict[str, Schema]:
    fields = {"name": TEXT, "description": TEXT, "type": TYPE, "value": VALUE}
    ignored = {"perm": _t("object"), "form": _t("object")}
    create = _obj(
        {"property": _id(PROPERTY), **fields, **ignored},
        ["property", "value"],
        description="`perm` and `form` (product profiles) are accepted and ignored.",
    )
    return {
        "DevicePropertyCreate": {
            "anyOf": [create, {"type": "array", "minItems": 1, "maxItems": 1000, "items": create}]
        },
        "DevicePropertyUpdate": _obj({**fields, **ignored}, ["value"]),
        "DevicePropertyPatch": _obj({**fields, **ignored}),
        "DeviceProperty": _record(
            {
                "property": _id(PROPERTY),
                "name": _t("string"),
                "description": _t("string"),
                "type": TYPE,
                "value": VALUE,
                "created": _t("integer", description=MS),
                "modified": _t("integer", description=MS),
            }
        ),
    }


def property_paths() -> dict[str, Schema]:
    dev, one = [USER, DEVICE], [USER, DEVICE, PROPERTY_ID]
    prop = _ok("The property", "DeviceProperty")
    created = _ok(
        "The property, or the list when an array was sent",
        {"anyOf": [_ref("DeviceProperty"), _array("DeviceProperty")]},
    )
    no_device = {404: "Device not found"}
    missing = {404: "Property not found"}
    bad = {**BAD_BODY, 400: "Invalid body, id, type or value, property exists, or no room left"}
    bad_update = {**BAD_BODY, 400: "Invalid body, id, type or value", 413: None}
    base = "/v3/users/{user}/devices/{device}/properties"
    return {
        base: {
            "get": _op(
                "listDeviceProperties",
                _ok("Properties", _array("DeviceProperty")),
                dev,
                no_device,
                text=_text("listDeviceProperties"),
            ),
            "post": _op(
                "createDeviceProperty",
                created,
                dev,
                {**bad, **no_device},
                _body("DevicePropertyCreate"),
                text=_text("createDeviceProperty"),
            ),
        },
        base + "/{property}": {
            "get": _op("readDeviceProperty", prop, one, missing, text=_text("readDeviceProperty")),
            "put": _op(
                "replaceDeviceProperty",
                prop,
                one,
                {**bad_update, **missing},
                _body("DevicePropertyUpdate"),
                text=_text("replaceDeviceProperty"),
            ),
            "patch": _op(
                "patchDeviceProperty",
                prop,
                one,
                {**bad_update, **missing},
                _body("DevicePropertyPatch"),
                text=_text("patchDeviceProperty"),
            ),
            "delete": _op(
                "deleteDeviceProperty",
                _ok("Deleted (empty body)"),
                one,
                missing,
                text=_text("deleteDeviceProperty"),
            ),
        },
    }
