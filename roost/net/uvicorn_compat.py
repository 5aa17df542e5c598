"""The parts of uvicorn Roost relies on beyond its documented interface, checked at start.

Two modules go below uvicorn's public surface, each for a measured reason:

- :mod:`roost.net.http` subclasses the httptools protocol: it overrides the request hooks to
  bound heads and pending connections, and ``_start_asgi_task`` (private) so that resource calls,
  the API's hot path, are answered without the ASGI machinery (BENCHMARKS.md, "direct path");
- :mod:`roost.net.iotmp_websocket` is the WebSocket protocol class uvicorn is given as ``ws=``
  and hands upgrades to, with every other path passed on to ``AutoWebSocketsProtocol``;
- both it and :mod:`roost.net.tls_handshake` join uvicorn's set of open connections, whose
  ``shutdown()`` uvicorn calls when the server stops.

A uvicorn release may rename or drop any of these. Were that to happen silently, the override
would simply never be called: the direct path bypassed, heads unbounded. So pyproject allows only
the uvicorn releases the suite ran on (:data:`TESTED`), and :func:`check_uvicorn` refuses to
start, naming what is missing, when the installed uvicorn lacks a member these modules use.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.websockets import auto
from uvicorn.server import Server

from roost.errors import ConfigError

TESTED = ((0, 55), (0, 55))  # oldest and newest minor release; pyproject says the same

# Members of HttpToolsProtocol that roost.net.http overrides or calls -> their parameters.
PROTOCOL_METHODS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "_start_asgi_task": ("self", "cycle", "app"),
        "connection_made": ("self", "transport"),
        "connection_lost": ("self", "exc"),
        "data_received": ("self", "data"),
        "on_headers_complete": ("self",),
        "on_message_complete": ("self",),
        "on_response_complete": ("self",),
        "handle_websocket_upgrade": ("self",),
    }
)
# What the direct path reads and sets on a request cycle (instance attributes, set in __init__).
CYCLE_ATTRIBUTES = (
    "scope",
    "receive",
    "flow",
    "disconnected",
    "response_started",
    "response_complete",
    "waiting_for_100_continue",
    "default_headers",
    "keep_alive",
    "message_event",
    "on_response",
    "transport",
)
# Source fragments of uvicorn's own code that the modules above take as given: the WebSocket
# handoff (the ws class built with these keywords), the connection set, and its shutdown call.
CONVENTIONS: Mapping[str, tuple[type, str, str]] = MappingProxyType(
    {
        "the ws= class built with config, server_state and app_state": (
            HttpToolsProtocol,
            "handle_websocket_upgrade",
            "config=self.config,",
        ),
        "HttpToolsProtocol.connections": (HttpToolsProtocol, "__init__", "self.connections ="),
        "Server.shutdown calling connection.shutdown()": (
            Server,
            "shutdown",
            "connection.shutdown()",
        ),
    }
)


def problems() -> list[str]:
    """What the installed uvicorn lacks of what Roost uses; empty when all is there."""
    found: list[str] = []
    version = tuple(int(part) for part in uvicorn.__version__.split(".")[:2])
    if not TESTED[0] <= version <= TESTED[1]:
        found.append(f"version {uvicorn.__version__} (tested: {_tested()})")
    for name, parameters in PROTOCOL_METHODS.items():
        method = getattr(HttpToolsProtocol, name, None)
        if method is None:
            found.append(f"HttpToolsProtocol.{name}")
        elif (given := tuple(inspect.signature(method).parameters)) != parameters:
            found.append(
                f"HttpToolsProtocol.{name}({', '.join(parameters)}), not ({', '.join(given)})"
            )
    assigned = _source(RequestResponseCycle.__init__)
    found += [
        f"RequestResponseCycle.{name}"
        for name in CYCLE_ATTRIBUTES
        if not hasattr(RequestResponseCycle, name) and f"self.{name} =" not in assigned
    ]
    found += [
        name
        for name, (owner, member, fragment) in CONVENTIONS.items()
        if fragment not in _source(getattr(owner, member, None))
    ]
    if auto.AutoWebSocketsProtocol is None:
        found.append("a WebSocket implementation (install uvicorn[standard])")
    return found


def check_uvicorn() -> None:
    """Raise ConfigError, naming what is missing, unless uvicorn has all that Roost uses."""
    missing = problems()
    if missing:
        raise ConfigError(
            f"uvicorn {uvicorn.__version__} lacks what Roost relies on: {', '.join(missing)};"
            f" install a tested release ({_tested()})"
        )


def _source(code: object) -> str:
    try:
        return inspect.getsource(code)  # type: ignore[arg-type]
    except (OSError, TypeError):  # no source shipped: cannot tell, so not as tested
        return ""


def _tested() -> str:
    (low_major, low_minor), (high_major, high_minor) = TESTED
    return f"uvicorn>={low_major}.{low_minor},<{high_major}.{high_minor + 1}"
