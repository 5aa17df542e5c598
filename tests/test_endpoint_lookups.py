"""The host name lookups of endpoint calls: on a small thread pool of their own (never the
loop's default executor, which password hashing uses), and a lookup that does not end within
``endpoints_timeout`` is not tried again (its thread may still be stuck in the resolver)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roost.config import Settings

from conftest import bearer, make_settings
from endpoint_target import ENDPOINTS, create_endpoint

STUCK = "stuck.example"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path / "data",
        endpoints_timeout=0.5,
        endpoints_retries=2,
        endpoints_retry_delay=0.01,
    )


@pytest.fixture
def stuck_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """socket.getaddrinfo, held for STUCK until the test ends: the names of the threads that
    looked it up."""
    original = socket.getaddrinfo
    release = threading.Event()
    threads: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == STUCK:
            threads.append(threading.current_thread().name)
            release.wait(30)
            raise socket.gaierror(socket.EAI_NONAME, "released")
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    try:
        yield threads
    finally:
        release.set()


async def test_a_lookup_that_times_out_is_not_retried(
    stuck_resolver: list[str], http: httpx.AsyncClient, admin_token: str
) -> None:
    await create_endpoint(http, admin_token, "stuck", {"url": f"http://{STUCK}/"})
    called = await http.post(f"{ENDPOINTS}/stuck/call", headers=bearer(admin_token))
    assert called.status_code == 502
    assert "not resolved within 0.5 s" in called.json()["error"]["message"]
    assert len(stuck_resolver) == 1  # one attempt, no retry
    assert stuck_resolver[0].startswith("roost-endpoint-lookup")
