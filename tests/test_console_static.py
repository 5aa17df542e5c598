"""The console's files as served (no browser): at /, under /console/, after every API route;
and its sources reach only the public REST API (every path they name is in /openapi.json)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx

from roost.api.openapi import openapi_document
from roost.app import Roost
from roost.console import STATIC

from conftest import make_settings

SOURCES = sorted((STATIC / "js").rglob("*.js"))
# where the console may open connections: the API client, the live streams, the export download
# (a fetch with the session's token); chart.js only adds the <script> of /console/vendor
NETWORK_MODULES = {"api.js", "live.js", "bucket.js"}
NETWORK = re.compile(r"\bfetch\(|new WebSocket\(|new EventSource\(|XMLHttpRequest|sendBeacon")
USER_PATH = re.compile(r'userPath\("(v\d)",\s*[`"]([^`"]*)[`"]')
LITERAL = re.compile(r'["`](/(?:v\d|oauth)/[^"`?]*)["`?]')


def api_templates() -> list[re.Pattern[str]]:
    """Each path of the OpenAPI document, and each of its leading parts (a base the console
    builds on: ``/v1/users/{user}/devices/{device}`` for ``.../stats``), as an exact regex."""
    found = set()
    for path in openapi_document()["paths"]:
        parts = path.split("/")
        for end in range(2, len(parts) + 1):
            prefix = re.escape("/".join(parts[:end]))
            found.add(re.sub(r"\\\{\w+\\\}", "[^/]+", prefix) + "$")
    return [re.compile(pattern) for pattern in sorted(found)]


def named_paths(source: Path) -> list[str]:
    text = source.read_text()
    paths = [f"/{version}/users/U{rest}" for version, rest in USER_PATH.findall(text)]
    paths += LITERAL.findall(text)
    return [re.sub(r"\$\{[^}]*\}", "X", path) for path in paths]


def test_every_path_the_console_names_is_public_api() -> None:
    templates = api_templates()
    named = [(s.name, p) for s in SOURCES for p in named_paths(s)]
    assert len(named) >= 15  # the patterns still find the calls
    missing = [(name, path) for name, path in named if not any(t.match(path) for t in templates)]
    assert missing == []


def test_only_the_network_modules_open_connections() -> None:
    opening = {s.name for s in SOURCES if NETWORK.search(s.read_text())}
    assert opening == NETWORK_MODULES
    assert not any("innerHTML" in s.read_text() for s in SOURCES)  # built with h(), never parsed


async def test_index_is_served_at_the_root(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/console/js/main.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert page.headers["cache-control"] == "no-cache"
    script = await http.get("/console/js/main.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["content-security-policy"] == policy
    style = await http.get("/console/app.css")
    assert "prefers-color-scheme: dark" in style.text
    assert (await http.head("/")).status_code == 200


async def test_the_api_keeps_its_paths(http: httpx.AsyncClient) -> None:
    assert (await http.get("/openapi.json")).json()["openapi"] == "3.1.0"
    unknown = await http.get("/v1/nothing")
    assert unknown.status_code == 404
    assert (await http.get("/console/nothing.js")).status_code == 404
    assert (await http.get("/console/../roost/app.py")).status_code == 404
    assert (await http.post("/")).status_code == 405


def test_the_chart_library_is_built_not_committed() -> None:
    vendor = STATIC / "vendor"
    assert (vendor / "uPlot.iife.min.js").is_file(), "run `make console`"
    ignored = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "roost/console/static/vendor/" in ignored


async def test_the_console_is_served_over_https_too(tmp_path: Path) -> None:
    server = Roost(make_settings(tmp_path / "data", tls_self_signed=True))
    await server.start()
    try:
        cert = server.settings.data_dir / "tls" / "self-signed.crt"
        context = ssl.create_default_context(cafile=str(cert))
        base = f"https://localhost:{server.ports['https']}"
        async with httpx.AsyncClient(base_url=base, verify=context) as https:
            page = await https.get("/")
            assert page.status_code == 200
            assert "/console/js/main.js" in page.text
            assert (await https.get("/console/js/api.js")).status_code == 200
    finally:
        await server.stop()
