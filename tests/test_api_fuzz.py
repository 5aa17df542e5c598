"""OpenAPI-driven fuzzing of the REST API with schemathesis, against a real server.

Every operation of ``GET /openapi.json`` gets ``EXAMPLES`` generated requests (derandomised, so
the run is the same every time; ``ROOST_FUZZ_EXAMPLES=500`` for a longer hunt), plus the
boundary and wrong-method cases schemathesis adds, sent with a valid admin token. Each answer
must not be a 5xx and must conform to the document: a documented status code, content type,
headers and body schema. Schemathesis is synchronous, so Roost runs on its own event loop in a
thread.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from roost.api.openapi import openapi_document

from conftest import ADMIN, ADMIN_PASSWORD
from live_server import LiveServer

EXAMPLES = int(os.environ.get("ROOST_FUZZ_EXAMPLES", "25"))  # raise it for a longer hunt
DEVICE = "dev1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(openapi_document())
ran: Counter[str] = Counter()
statuses: Counter[int] = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # endpoints_allow_private stays off: a fuzzed endpoint never reaches this machine or its
    # network; and one attempt, briefly, for the public addresses it may name
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    server = LiveServer(data_dir, endpoints_retries=0, endpoints_timeout=2.0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin_headers(live: LiveServer) -> dict[str, str]:
    response = httpx.post(
        f"http://127.0.0.1:{live.port}/oauth/token",
        data={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
    )
    response.raise_for_status()
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    device = {"device": DEVICE, "credentials": "secret1"}
    created = httpx.post(
        f"http://127.0.0.1:{live.port}/v1/users/{ADMIN}/devices", json=device, headers=headers
    )
    created.raise_for_status()
    return headers


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(
    case: schemathesis.Case, live: LiveServer, admin_headers: dict[str, str]
) -> None:
    ran[f"{case.method} {case.path}"] += 1
    aim_at_real_things(case)
    response = case.call_and_validate(
        base_url=f"http://127.0.0.1:{live.port}",
        headers={**admin_headers, "Accept": "application/json"},  # never an endless SSE stream
        checks=CHECKS,
        timeout=10,
    )
    statuses[response.status_code] += 1


def aim_at_real_things(case: schemathesis.Case) -> None:
    """Random user and device names almost never exist, and then every call stops at 404. So
    calls go to the admin's tree, and all but deletions to its device ``dev1``, where they reach
    the code behind the lookups. (Random names are the business of test_api_hostile.py.)"""
    parameters = case.path_parameters
    if parameters is None:
        return
    if "user" in parameters:
        parameters["user"] = ADMIN
    if "device" in parameters and case.method != "DELETE":
        parameters["device"] = DEVICE


def test_every_operation_was_fuzzed() -> None:
    """Runs after the fuzz (tests run in file order): each operation got its examples."""
    if not ran:
        pytest.skip("the fuzz did not run (deselected)")
    documented = {
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
    }
    assert documented <= set(ran)
    undocumented = sum(n for operation, n in ran.items() if operation not in documented)
    print(
        f"\nschemathesis: {sum(ran.values())} requests, {undocumented} of them with methods"
        f" the document does not list, over {len(documented)} operations"
    )
    print("  answers by status:", dict(sorted(statuses.items())))
    for operation, count in sorted(ran.items()):
        print(f"  {count:4d}  {operation}")
