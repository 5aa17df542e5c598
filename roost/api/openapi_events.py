"""The OpenAPI part of the server events (``events.py``): the catalogue and the events
WebSocket, built with the helpers of :mod:`roost.api.openapi`."""

from __future__ import annotations

from roost.api.openapi import USER, Schema, _obj, _ok, _op, _t
from roost.api.openapi_resources import _upgradable

SOCKET = (
    "SubscribeUserEvents",
    "The user's server events, live (WebSocket only; thinger-api.md 2.19). Send one JSON text"
    ' message per subscription: `{"event": name or pattern, <filters>}`, such as'
    ' `{"event": "device_state_change", "device": "dev1", "state": "disconnected"}`; every key'
    " but `event` and `enabled` filters the event's field of that name (a pattern, or a number"
    ' or boolean to be equal to); `"enabled": false` removes the subscription. Patterns are'
    " names with the wildcards `*` or `.*` (any run) and `.` (any one character), at most 64"
    " characters; other regex syntax is refused. Each matching event comes once as a JSON"
    ' text frame `{"event": name, <fields>, "user": u}`; a refused message gets'
    ' `{"error": {"message": m}}`. At most `max_stream_subscriptions` subscriptions per socket;'
    " a client that does not keep up loses its OLDEST frames. The socket is closed (1008)"
    " when the access it was opened with ends.",
)
CATALOGUE = (
    "ReadServerEvents",
    "The events this server emits, each with the fields a subscription may filter on and"
    " hints of their values. Public, as Thinger's: the same for every caller.",
)


def event_paths() -> dict[str, Schema]:
    hints = {"type": "array", "items": _t("string"), "description": "Values it may take"}
    filters = {"type": "array", "items": _obj({"field": _t("string"), "hints": hints})}
    event = _obj({"event": _t("string"), "filters": filters}, ["event", "filters"])
    listed = _ok("The events", {"type": "array", "items": event})
    catalogue = _op("serverEvents", listed, text=CATALOGUE)
    catalogue.pop("parameters", None)
    catalogue["security"] = []
    catalogue["responses"] = {"200": listed}
    not_upgraded = {404: "Not a WebSocket handshake"}
    socket = _op("subscribeUserEvents", _ok("Unused"), [USER], not_upgraded, text=SOCKET)
    socket = _upgradable(socket, only=True)
    return {
        "/v1/server/events": {"get": catalogue},
        "/v1/users/{user}/events": {"get": socket},
    }
