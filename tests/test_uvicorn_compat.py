"""Roost refuses to start on a uvicorn that lacks what roost.net.http and
roost.net.iotmp_websocket rely on, instead of silently losing the direct path or the bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvicorn.server
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from roost.app import Roost
from roost.config import Settings
from roost.errors import ConfigError
from roost.net import uvicorn_compat

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_the_installed_uvicorn_has_everything() -> None:
    assert uvicorn_compat.problems() == []


def test_pyproject_allows_only_the_tested_releases() -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [spec] = [d for d in dependencies if d.startswith("uvicorn")]
    low, high = re.fullmatch(r"uvicorn\[standard\]>=(\d+\.\d+),<(\d+\.\d+)", spec).groups()  # type: ignore[union-attr]
    (low_major, low_minor), (high_major, high_minor) = uvicorn_compat.TESTED
    assert low == f"{low_major}.{low_minor}"
    assert high == f"{high_major}.{high_minor + 1}"


async def _start_fails(settings: Settings) -> str:
    roost = Roost(settings)
    with pytest.raises(ConfigError) as failure:
        await roost.start()
    assert "http" not in roost.ports  # nothing was bound
    return failure.value.message


async def test_a_missing_hook_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.delattr(HttpToolsProtocol, "_start_asgi_task")
    message = await _start_fails(settings)
    assert "HttpToolsProtocol._start_asgi_task" in message
    assert "install a tested release" in message


async def test_a_changed_signature_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    def on_headers_complete(self: Any, extra: int) -> None: ...

    monkeypatch.setattr(HttpToolsProtocol, "on_headers_complete", on_headers_complete)
    assert "HttpToolsProtocol.on_headers_complete(self), not (self, extra)" in await _start_fails(
        settings
    )


async def test_an_untested_release_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    monkeypatch.setattr(uvicorn, "__version__", "0.99.0")
    assert "version 0.99.0" in await _start_fails(settings)


def test_a_changed_convention_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def shutdown(self: Any) -> None:  # a release whose shutdown no longer tells connections
        return None

    monkeypatch.setattr(uvicorn.server.Server, "shutdown", shutdown)
    assert uvicorn_compat.problems() == ["Server.shutdown calling connection.shutdown()"]
