"""create_app(services): the Starlette application of the REST API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from roost.api import device_tokens, devices, oauth, resources, server, stats
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
    ]


def create_app(services: Services) -> Starlette:
    app = Starlette(routes=all_routes(), exception_handlers=dict(HANDLERS))
    app.state.services = services
    return app
