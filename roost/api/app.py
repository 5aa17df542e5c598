"""RestApi(services): the ASGI application of the REST API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

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


class RestApi:
    """The REST API: Starlette's middleware and router, with a shortcut for the hot path.

    A request for a resource call goes straight to its endpoint, which answers its own errors
    (:mod:`roost.api.resources`); the routes are the router's own first routes, matched the same
    way, so the answer is the one the router would give, ~10 us sooner. (One difference: after
    an unexpected error's 500 the connection stays open, where Starlette's middleware re-raised
    and uvicorn closed it.) Everything else, a resource route with the wrong method included
    (405), goes through Starlette. Middleware added to Starlette (CORS, say) would not see
    resource calls: add it around RestApi instead.
    """

    def __init__(self, services: Services) -> None:
        self.starlette = Starlette(routes=all_routes(), exception_handlers=dict(HANDLERS))
        self.starlette.router.redirect_slashes = False  # a wrong path is 404, not a redirect
        self.starlette.state.services = services
        self._hot: tuple[Route, ...] = tuple(resources.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._hot:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope["app"] = self.starlette
                    await route.app(scope, receive, send)
                    return
        await self.starlette(scope, receive, send)
