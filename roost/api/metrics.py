"""``GET /metrics``: this node's metrics in the Prometheus text format (:mod:`roost.metrics`).

Open to anyone when the ``metrics_public`` setting is on (a scraper on a private network);
otherwise for an administrator's login session or an administrator's access token that allows
``ReadServerMetrics`` (:func:`roost.api.access.authorize_operator`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roost.api.access import authorize_operator
from roost.services import Services

ACTION = "ReadServerMetrics"


async def metrics(request: Request) -> Response:
    services: Services = request.app.state.services
    if not services.settings.metrics_public:
        await authorize_operator(request, ACTION)
    body, content_type = services.metrics.exposition(request.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})


routes = [Route("/metrics", metrics, methods=["GET"], name="metrics")]
