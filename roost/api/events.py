"""Server events (thinger-api.md 2.19): the events WebSocket of a user, and their catalogue.

``/v1/users/{user}/events`` (action SubscribeUserEvents on the User; token as
``?authorization=`` or a Bearer header). After it opens, the client sends JSON text messages,
one per subscription, as the Thinger clients do:
``{"event": "device_state_change", "device": "dev1", "state": "disconnected"}``. ``event`` is an
event name or a pattern (``device_.*``, ``.*``); every other key is a filter on the event's field
of that name (``device``, ``bucket``, ``endpoint``, ``state``, ``property``...), a pattern too,
or a number or boolean that must be equal. The same message with ``"enabled": false`` removes
that subscription. Patterns are names with wildcards only: ``*`` or ``.*`` for any run of
characters, ``.`` for any one, ``^``/``$`` allowed at the ends; any other regex syntax is
refused, and matching is linear (no backtracking regex engine runs on them).

The server sends each event that matches a subscription once, as one JSON text frame
``{"event": name, <its fields>, "user": u}``, and ``{"error": {"message": m}}`` for a refused
message. A socket holds at most ``max_stream_subscriptions`` subscriptions; its frames wait in a
bounded queue that drops the OLDEST when the client does not keep up. When the access it was
opened with ends (:mod:`roost.api.stream_access`) the server closes it with code 1008.

``GET /v1/server/events`` (public) lists the events Roost emits and their filters.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from roost.api.json import json_response, parse_json
from roost.api.socket_client import MAX_MESSAGE, SocketClient, accept
from roost.api.stream_access import StreamAccess
from roost.bus.base import Event
from roost.bus.events import CATALOGUE
from roost.errors import InvalidInput, RoostError
from roost.services import Services
from roost.wire.pson import PsonValue

ACTION = "SubscribeUserEvents"
MAX_PATTERN = 64  # characters of an event name or filter pattern
MAX_FILTERS = 8
MAX_FILTER_NAME = 32
PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@.*")
ANY_RUN, ANY_ONE = "*", "."

Wanted = str | int | float | bool  # a filter: a pattern, or a value to be equal to


def compile_pattern(text: str) -> str:
    """``text`` as the glob :func:`matches` takes (``*`` any run, ``.`` any one character);
    InvalidInput when it is longer than MAX_PATTERN or has other regex syntax."""
    if len(text) > MAX_PATTERN:
        raise InvalidInput(f"a pattern has at most {MAX_PATTERN} characters")
    body = text.removeprefix("^").removesuffix("$")
    if not body or not PATTERN_CHARS.issuperset(body):
        raise InvalidInput(
            f"{text!r} is not an event name or pattern: use letters, digits, _ - @, and the"
            " wildcards .* (or *) and ."
        )
    return body.replace(".*", ANY_RUN)


def matches(glob: str, text: str) -> bool:
    """Whether ``text`` is matched by ``glob`` as a whole: greedy, with one backtrack point
    (the last ``*``), so at most len(glob) * len(text) steps."""
    g = t = 0
    star, mark = -1, 0
    while t < len(text):
        if g < len(glob) and glob[g] == ANY_RUN:
            star, mark = g, t
            g += 1
        elif g < len(glob) and (glob[g] == ANY_ONE or glob[g] == text[t]):
            g += 1
            t += 1
        elif star >= 0:
            g, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    return all(c == ANY_RUN for c in glob[g:])


@dataclass(frozen=True, slots=True)
class Subscription:
    event: str  # a glob (compile_pattern)
    filters: tuple[tuple[str, Wanted], ...]  # sorted by field; patterns compiled

    @classmethod
    def parse(cls, message: dict[str, object]) -> Subscription:
        event = message.get("event")
        if not isinstance(event, str):
            raise InvalidInput('a subscription is a JSON object with an "event" name or pattern')
        filters: list[tuple[str, Wanted]] = []
        for name, value in message.items():
            if name in ("event", "enabled"):
                continue
            if len(name) > MAX_FILTER_NAME or not name.isidentifier():
                raise InvalidInput(f"{name[:MAX_FILTER_NAME]!r} is not a filter name")
            if isinstance(value, str):
                filters.append((name, compile_pattern(value)))
            elif isinstance(value, int | float | bool):
                filters.append((name, value))
            else:
                raise InvalidInput(f'filter "{name}" must be a string, a number or a boolean')
        if len(filters) > MAX_FILTERS:
            raise InvalidInput(f"a subscription has at most {MAX_FILTERS} filters")
        return cls(compile_pattern(event), tuple(sorted(filters, key=lambda f: f[0])))

    def wants(self, event: Event) -> bool:
        if not matches(self.event, event.name):
            return False
        fields = event.fields
        for name, wanted in self.filters:
            value: PsonValue = event.user if name == "user" else fields.get(name)
            if isinstance(wanted, str):
                if not isinstance(value, str) or not matches(wanted, value):
                    return False
            elif value != wanted or isinstance(value, bool) is not isinstance(wanted, bool):
                return False
        return True


async def events_socket(websocket: WebSocket) -> None:
    owner = websocket.path_params["user"]
    services: Services = websocket.app.state.services
    access = StreamAccess(websocket, ACTION, owner, None)
    if await accept(websocket, access):
        client = _EventsClient(websocket, services, owner)
        services.bus.subscribe_events(owner, client.heard)
        await client.run(access)


class _EventsClient(SocketClient):
    def __init__(self, websocket: WebSocket, services: Services, owner: str) -> None:
        super().__init__(websocket, services, f"events socket of {owner}")
        self.owner = owner
        self.subscriptions: dict[Subscription, None] = {}  # an ordered set

    def release(self) -> None:
        self.services.bus.unsubscribe_events(self.owner, self.heard)

    def heard(self, event: Event) -> None:
        if event.name not in CATALOGUE:  # carried on the same source, not for clients
            return
        if any(subscription.wants(event) for subscription in self.subscriptions):
            self.outbox.put(event.to_client())

    async def handle(self, data: bytes) -> None:
        try:
            self._subscribe(data)
        except RoostError as exc:
            self.outbox.put({"error": {"message": exc.message}})

    def _subscribe(self, data: bytes) -> None:
        if len(data) > MAX_MESSAGE:
            raise InvalidInput(f"message larger than {MAX_MESSAGE} bytes")
        message = parse_json(data)
        if not isinstance(message, dict):
            raise InvalidInput('a subscription is a JSON object with an "event" name or pattern')
        enabled = message.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidInput('"enabled" must be true or false')
        subscription = Subscription.parse(message)
        if not enabled:
            self.subscriptions.pop(subscription, None)
            return
        limit = self.services.settings.max_stream_subscriptions
        if subscription not in self.subscriptions and len(self.subscriptions) >= limit:
            raise InvalidInput(f"at most {limit} subscriptions can be made on one connection")
        self.subscriptions[subscription] = None


def catalogue() -> list[dict[str, object]]:
    """The events Roost emits, each with the filters a subscription may use."""
    return [
        {
            "event": name,
            "filters": [{"field": field, "hints": list(hints)} for field, hints in filters.items()],
        }
        for name, filters in CATALOGUE.items()
    ]


async def server_events(request: Request) -> Response:
    return json_response(catalogue())


routes = [
    Route("/v1/server/events", server_events, methods=["GET"]),
    WebSocketRoute("/v1/users/{user}/events", events_socket),
]
