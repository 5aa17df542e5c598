"""create_app(services): the Starlette application of the REST API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from roost.api import (
    device_tokens,
    devices,
    iotmp_socket,
    oauth,
    resources,
    server,
    stats,
    streams,
    tokens,
    users,
)
from roost.api.errors import HANDLERS
from roost.services import Services


def all_routes() -> list[BaseRoute]:
    # resource calls first: they are the hot path, and their /v2 prefix shadows nothing else
    return [
        *resources.routes,
        *server.routes,
        *oauth.routes,
        *devices.routes,
        *stats.routes,
        *device_tokens.routes,
        *tokens.routes,
        *users.routes,
        *streams.routes,
        *iotmp_socket.routes,
        *resources.late_routes,
    ]


def create_app(services: Services) -> Starlette:
    app = Starlette(routes=all_routes(), exception_handlers=dict(HANDLERS))
    app.router.redirect_slashes = False  # a wrong path is a 404, not a redirect to a guess
    app.state.services = services
    return app
