"""RestApi(services): the ASGI application of the REST API."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, cast

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from roost.api import (
    assets,
    bucket_exports,
    buckets,
    console,
    device_tokens,
    devices,
    endpoints,
    events,
    metrics,
    oauth,
    properties,
    resources,
    server,
    stats,
    streams,
    tokens,
    users,
)
from roost.api.errors import HANDLERS
from roost.net.http import Answer
from roost.services import Services


def all_routes() -> list[BaseRoute]:
    # resource calls first: they are the hot path, and their /v2 prefix shadows nothing else
    return [
        *resources.routes,
        *server.routes,
        *metrics.routes,
        *assets.routes,
        *oauth.routes,
        *devices.routes,
        *stats.routes,
        *device_tokens.routes,
        *properties.routes,
        *buckets.routes,
        *bucket_exports.routes,
        *endpoints.routes,
        *tokens.routes,
        *users.routes,
        *streams.routes,
        *events.routes,
        *resources.late_routes,
    ]


class RestApi:
    """The REST API: a Starlette app, plus the direct path of its hot routes.

    :meth:`direct` is the HTTP protocol's hook (:data:`roost.net.http.Direct`): a resource call
    is matched against the router's own first routes, the same way, and answered by its endpoint
    without ASGI middleware or messages (:mod:`roost.api.resources`), ~15 us sooner. Everything
    else goes through Starlette, a resource route with the wrong method included (405).
    Middleware added to Starlette (CORS, say) would not see direct answers: add such a concern to
    the endpoints, or leave :meth:`direct` out of the server.
    """

    def __init__(self, services: Services) -> None:
        # the console's files come last: every API route keeps its path
        self.starlette = Starlette(
            routes=[*all_routes(), *console.routes], exception_handlers=dict(HANDLERS)
        )
        self.starlette.router.redirect_slashes = False  # a wrong path is 404, not a redirect
        self.starlette.state.services = services
        self._direct_routes = tuple(
            (route, cast(resources.CallEndpoint, route.endpoint)) for route in resources.routes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.starlette(scope, receive, send)

    def direct(self, scope: Scope, receive: Receive) -> Coroutine[Any, Any, Answer] | None:
        """The answer to a resource call, or None for a request Starlette must route. Matches as
        ``Route.matches`` does (root path "", path parameters of type str and path, which do not
        convert), without building the scopes it builds."""
        path = scope["path"]
        for route, endpoint in self._direct_routes:
            match = route.path_regex.match(path)
            if match is not None:
                if route.methods is None or scope["method"] not in route.methods:
                    return None
                scope["path_params"] = match.groupdict()
                scope["endpoint"] = endpoint
                scope["app"] = self.starlette
                return endpoint.answer(scope, receive)
        return None
