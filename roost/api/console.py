"""The console at ``/``: ``index.html``, and its files under ``/console/`` (:mod:`roost.console`).

The console is a browser app that uses the REST API as any client does; these routes only hand
out its static files, without authentication (they hold no data). They are not API operations,
so they are not in ``/openapi.json``. Pages are addressed by the URL fragment (``/#/devices``),
so ``/`` is the only HTML route. The files are sent with ``Cache-Control: no-cache`` (revalidated
by ETag each time, so an upgraded server is seen at once) and a Content-Security-Policy that
allows nothing but this origin.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from roost.console import STATIC

# scripts, styles, sockets and fetches of this origin only; inline styles for uPlot's canvas
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=HEADERS)


class ConsoleFiles(StaticFiles):
    """Starlette's static files, with the console's headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
                ]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


routes = [
    Route("/", index, methods=["GET", "HEAD"]),
    Mount("/console", ConsoleFiles(directory=STATIC), name="console"),
]
