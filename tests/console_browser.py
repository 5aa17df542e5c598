"""The harness of the console's browser tests (tests/test_console_browser.py): a live Roost
whose loop the test can run coroutines on, Debian's chromium through Playwright, and what the
tests collect from the browser (console errors, request paths, screenshots)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import Browser, ConsoleMessage, Page, Request

from roost.app import Roost

from conftest import ADMIN, ADMIN_PASSWORD
from live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
WIDTHS = (1280, 360)
TIMEOUT_MS = 10_000
# the browser's zone: half an hour off UTC, so that an aggregation by hours shows that the
# console sends its zone (buckets start at :30 UTC there, at :00 in UTC)
ZONE = "Asia/Kolkata"
T = TypeVar("T")


class ConsoleServer(LiveServer):
    """The live server, keeping its Roost so the test can reach its device ports and loop."""

    roost: Roost

    async def _serve(self) -> None:  # LiveServer's, keeping the Roost
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self.roost = Roost(self.settings)
        await self.roost.start()
        self.port = self.roost.http_port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.roost.stop()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)


class Errors:
    """Browser console errors and page errors, with the few a test expects (a 401 it caused)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.expected: list[str] = []

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(message.text)

    def page_error(self, error: Exception) -> None:
        self.seen.append(f"uncaught: {error}")

    def take(self) -> list[str]:
        found = [e for e in self.seen if not any(x in e for x in self.expected)]
        self.seen, self.expected = [], []
        return found


class Requests:
    """The path of every request the console made, to hold them to the public API."""

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def seen(self, request: Request) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("http", "https"):  # not the blob: of a download
            self.paths.add(url.path)


class Relay:
    """The device side of an input: what the server wrote, seen from another thread."""

    def __init__(self, value: Any = False) -> None:
        self.value = value
        self.written = threading.Event()
        self.beeped = threading.Event()  # the device's run resource was run

    def set(self, value: Any) -> None:
        self.value = value
        self.written.set()


def open_page(browser: Browser, live: ConsoleServer, errors: Errors, requests: Requests) -> Page:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1280, "height": 900}, timezone_id=ZONE
    )
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", errors.console)
    page.on("pageerror", errors.page_error)
    page.on("request", requests.seen)
    return page


def api_token(live: ConsoleServer) -> str:
    answer = httpx.post(
        f"{live.url}/oauth/token",
        data={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def shoot(page: Page, name: str) -> None:
    """Screenshots of the page at each width, for review."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=ARTIFACTS / f"{name}-{width}.png", full_page=True)
        # nothing wider than the window: the page never scrolls sideways
        wider = page.evaluate(
            """(width) => [...document.querySelectorAll('body *')]
                .filter((el) => el.getBoundingClientRect().right > width + 0.5)
                .filter((el) => !el.closest('.chart'))
                .map((el) => `${el.tagName}.${el.className}: ${el.textContent.slice(0, 40)}`)""",
            width,
        )
        assert wider == [], f"{name} at {width} px: {wider}"
    page.set_viewport_size({"width": 1280, "height": 900})


def check_labels(page: Page) -> None:
    """Every visible form control has an accessible name from a label (or aria-label)."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => el.type !== 'hidden')
            .filter((el) => !el.labels.length && !el.getAttribute('aria-label'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.02)


class Target:
    """The target of an http_request endpoint: an HTTP server on loopback that records each
    request (method, path, headers, body) and answers ``{"greeting": ..., "got": <body>}``, or
    418 when the body says ``teapot``."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[str, str, dict[str, str], bytes]] = queue.Queue()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                target.received.put((self.command, self.path, headers, body))
                status = 418 if b"teapot" in body else 200
                answer = json.dumps({"greeting": "hello from the target", "got": body.decode()})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer.encode())

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def next(self) -> tuple[str, str, dict[str, str], bytes]:
        return self.received.get(timeout=10)
