"""Schemathesis on the token routes, sent with every kind of token, against a real server.

The access-token routes (``/v1/users/{user}/tokens[/{token}]``) and the device-token routes
(``/v1/users/{user}/devices/{device}/tokens[/{id}]``) get ``EXAMPLES`` generated requests per
operation (plus schemathesis's boundary and wrong-method cases) for each kind of caller in
:data:`KINDS`: a login session; a full-access, a read-only, a device-manager (denied
AccessDeviceResources on dev1) and a create-only (CreateDeviceToken on dev1) access token; a
device token; and access and device tokens that have expired or were deleted. Derandomised, so the
run is the same every time; ``ROOST_TOKEN_FUZZ_EXAMPLES=100`` (and ``ROOST_FUZZ_SEED=N`` for a
random run with that seed) for a longer hunt, see fuzz/README.md.

Path parameters are aimed at real things (the admin's tree, its devices, the ids of the tokens
of every kind and of a victim of each sort), as otherwise nearly every call would stop at a 404
before the code that matters. A request that changed something is followed by a repair that puts
back any token of the fleet it deleted or changed, so every kind stays what it claims to be. One
case in four carries the caller's token as ``?authorization=`` instead of the header.

For every answer, whatever the input:

* it is not a 5xx and conforms to the document (status, content type, headers, body schema);
* to anything but a login session, it holds no JWT of another token: a JWT (three base64url
  segments starting ``eyJ``, not copied from the request) whose claims name a token other than
  the caller's own (issue 14, item 1);
* an expired or deleted token gets 401 on every token route;
* a device token never gets a 2xx on a token route;
* a device token is created only by a caller that may call the device's resources itself
  (issue 14, item 2).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
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

EXAMPLES = int(os.environ.get("ROOST_TOKEN_FUZZ_EXAMPLES", "6"))  # per operation and kind
SEED = os.environ.get("ROOST_FUZZ_SEED")  # set: a random run from this seed, not derandomised
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
TOKEN_ROUTE = re.compile(r"/v1/users/[^/]+(/devices/[^/]+)?/tokens(/[^/]+)?")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")

DEVICES = ("dev1", "dev2")
EVERYTHING = {"*": {"*": ["*"]}}
READ_ONLY = {"*": {"*": ["Read*", "List*"]}}
NOTHING: dict[str, Any] = {}
DEVICES_BUT_DEV1 = {"Device": {"dev1": ["AccessDeviceResources"]}}  # a deny

SESSION = "session"
FULL = "full access token"
READER = "read-only access token"
MANAGER = "device manager token"  # every Device action but AccessDeviceResources on dev1
CREATOR = "create-only token"  # CreateDeviceToken on dev1 and nothing else
DEVICE = "device token"
EXPIRED = "expired access token"
REVOKED = "deleted access token"
EXPIRED_DEVICE = "expired device token"
REVOKED_DEVICE = "deleted device token"
KINDS = (SESSION, FULL, READER, MANAGER, CREATOR, DEVICE, EXPIRED, REVOKED)
KINDS += (EXPIRED_DEVICE, REVOKED_DEVICE)
DEAD = frozenset({EXPIRED, REVOKED, EXPIRED_DEVICE, REVOKED_DEVICE})
DEVICE_KINDS = frozenset({DEVICE, EXPIRED_DEVICE, REVOKED_DEVICE})
# Access token ids: the token of each kind, and a victim that only the fuzz reads and changes.
ACCESS_IDS = {FULL: "fuzz_full", READER: "fuzz_reader", MANAGER: "fuzz_manager"}
ACCESS_IDS |= {CREATOR: "fuzz_creator", EXPIRED: "fuzz_expired", REVOKED: "fuzz_revoked"}
VICTIM = "fuzz_victim"

schema = schemathesis.openapi.from_dict(openapi_document()).include(path_regex="/tokens")
ran: Counter[tuple[str, str]] = Counter()
statuses: Counter[tuple[str, str, int]] = Counter()


@dataclass
class Caller:
    """A token of one kind: its JWT, and the token id (``jti``) and device that name it."""

    kind: str
    jwt: str
    jti: str | None = None
    device: str | None = None

    def owns(self, claims: dict[str, Any]) -> bool:
        return (
            self.jti is not None
            and claims.get("jti") == self.jti
            and claims.get("dev") == self.device
        )


@dataclass
class Fleet:
    """The tokens of every kind, and the victims, of the admin on one live server. It is set up
    through the API with a login session, and repaired after a request that changed something."""

    http: httpx.Client
    callers: dict[str, Caller] = field(default_factory=dict)
    access: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> settings as created
    device_victims: dict[str, str] = field(default_factory=dict)  # device -> victim token id

    @property
    def session(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.callers[SESSION].jwt}"}

    def set_up(self) -> None:
        login = {"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD}
        session = self._ok(self.http.post("/oauth/token", data=login))["access_token"]
        self.callers[SESSION] = Caller(SESSION, session)
        for device in DEVICES:
            body = {"device": device, "credentials": "secret1"}
            self._ok(self.http.post(f"/v1/users/{ADMIN}/devices", json=body, headers=self.session))
        soon = int(time.time() * 1000) + 1500
        for kind, allow, deny, expire in (
            (FULL, EVERYTHING, NOTHING, None),
            (READER, READ_ONLY, NOTHING, None),
            (MANAGER, {"Device": {"*": ["*"]}}, DEVICES_BUT_DEV1, None),
            (CREATOR, {"Device": {"dev1": ["CreateDeviceToken"]}}, NOTHING, None),
            (EXPIRED, EVERYTHING, NOTHING, soon),
            (REVOKED, EVERYTHING, NOTHING, None),
        ):
            self._access_token(kind, ACCESS_IDS[kind], allow, deny, expire)
        self._access_token(None, VICTIM, EVERYTHING, NOTHING, None)
        self._device_token(DEVICE, "dev1")
        self._device_token(EXPIRED_DEVICE, "dev1", expiration=soon)
        self._device_token(REVOKED_DEVICE, "dev1")
        for device in DEVICES:
            self.device_victims[device] = self._device_token(None, device)
        self._ok(self.http.delete(f"/v1/users/{ADMIN}/tokens/fuzz_revoked", headers=self.session))
        revoked = self.callers[REVOKED_DEVICE]
        path = f"/v1/users/{ADMIN}/devices/dev1/tokens/{revoked.jti}"
        self._ok(self.http.delete(path, headers=self.session))
        time.sleep(max(0.0, soon / 1000 + 1.1 - time.time()))  # exp is in whole seconds
        self.check_kinds()

    def check_kinds(self) -> None:
        """Every kind is what it claims to be: a dead token gets 401, a live one does not."""
        for kind, caller in self.callers.items():
            headers = {"Authorization": f"Bearer {caller.jwt}"}
            status = self.http.get(f"/v1/users/{ADMIN}/tokens", headers=headers).status_code
            assert (status == 401) == (kind in DEAD), (kind, status)

    def repair(self) -> None:
        """Put back every access token of the fleet that was deleted or changed, and every
        device token that was deleted (a new one, with a new id and JWT)."""
        for token_id, created in self.access.items():
            current = self.http.get(f"/v1/users/{ADMIN}/tokens/{token_id}", headers=self.session)
            if current.status_code == 200 and _settings(current.json()) == _settings(created):
                continue
            if token_id == ACCESS_IDS[EXPIRED]:
                raise AssertionError(f"the fuzz changed the expired token: {current.text}")
            if token_id == ACCESS_IDS[REVOKED]:
                if current.status_code == 404:
                    continue
                raise AssertionError(f"the deleted token is back: {current.text}")
            self.http.delete(f"/v1/users/{ADMIN}/tokens/{token_id}", headers=self.session)
            kind = next((k for k, i in ACCESS_IDS.items() if i == token_id), None)
            allow, deny, expire = created["allow"], created["deny"], created["expire"]
            self._access_token(kind, token_id, allow, deny, expire)
        listed = {
            device: {
                t["id"]
                for t in self._ok(self.http.get(_device_tokens(device), headers=self.session))
            }
            for device in DEVICES
        }
        if self.callers[DEVICE].jti not in listed["dev1"]:
            self._device_token(DEVICE, "dev1")
        for device, token_id in self.device_victims.items():
            if token_id not in listed[device]:
                self.device_victims[device] = self._device_token(None, device)

    def _access_token(
        self,
        kind: str | None,
        token_id: str,
        allow: dict[str, Any],
        deny: dict[str, Any],
        expire: int | None,
    ) -> None:
        body = {"token": token_id, "allow": allow, "deny": deny, "expire": expire}
        path = f"/v1/users/{ADMIN}/tokens"
        created = self._ok(self.http.post(path, json=body, headers=self.session))
        self.access[token_id] = created
        if kind is not None:
            self.callers[kind] = Caller(kind, created["access_token"], token_id)

    def _device_token(self, kind: str | None, device: str, expiration: int | None = None) -> str:
        body = {"token_name": kind or "victim", "token_expiration": expiration}
        created = self._ok(self.http.post(_device_tokens(device), json=body, headers=self.session))
        if kind is not None:
            self.callers[kind] = Caller(kind, created["token"], created["id"], device)
        token_id: str = created["id"]
        return token_id

    @staticmethod
    def _ok(response: httpx.Response) -> Any:
        assert response.status_code == 200, (response.request.url, response.text)
        return response.json() if response.content else None


def _device_tokens(device: str) -> str:
    return f"/v1/users/{ADMIN}/devices/{device}/tokens"


def _settings(token: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in token.items() if k not in ("access_token", "modified", "created")}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("token-fuzz") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fleet(live: LiveServer) -> Iterator[Fleet]:
    with httpx.Client(base_url=live.url, timeout=10) as http:
        fleet = Fleet(http)
        fleet.set_up()
        yield fleet


def seeded(test: Callable[..., None]) -> Callable[..., None]:
    return test if SEED is None else seed(int(SEED))(test)


@pytest.mark.parametrize("kind", KINDS)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=SEED is None,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@seeded
def test_token_routes_with_every_kind_of_token(
    case: schemathesis.Case, kind: str, live: LiveServer, fleet: Fleet
) -> None:
    generated = case.path_parameters, case.query, case.headers
    if generated[0] is not None:
        case.path_parameters = dict(generated[0])
    try:
        call_and_check(case, fleet.callers[kind], live, fleet)
    finally:  # schemathesis hands the same boundary cases to every kind, and keeps headers sent
        case.path_parameters, case.query, case.headers = generated


def call_and_check(case: schemathesis.Case, caller: Caller, live: LiveServer, fleet: Fleet) -> None:
    kind = caller.kind
    aim(case, caller, fleet)
    authorization = {"Authorization": f"Bearer {caller.jwt}"}
    headers = {**authorization, "Accept": "application/json"}
    if zlib.crc32(repr((case.path_parameters, case.body, case.query)).encode()) % 4 == 0:
        del headers["Authorization"]  # one case in four carries the token as ?authorization=
        case.query = {**(case.query or {}), "authorization": caller.jwt}
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
    response = case.call(base_url=live.url, headers=headers, timeout=10)
    operation = f"{case.operation.method.upper()} {case.operation.path}"
    ran[kind, operation] += 1
    statuses[kind, operation, response.status_code] += 1
    request = f"{case.method} {response.request.url} as a {kind}: {response.status_code}"
    succeeded = 200 <= response.status_code < 300
    path = unquote(urlsplit(response.request.url).path)
    on_the_route = case.method.upper() == case.operation.method.upper()
    device_tokens = case.operation.path.endswith("/devices/{device}/tokens")
    created_a_device_token = on_the_route and device_tokens and case.method.upper() == "POST"
    try:
        if kind in DEVICE_KINDS:
            assert not succeeded, f"{request} (a device token got a 2xx)"
        if kind in DEAD and on_the_route and TOKEN_ROUTE.fullmatch(path):
            assert response.status_code == 401, f"{request} (a dead token must get 401)"
        if succeeded and created_a_device_token and kind != SESSION:
            assert_creator_reaches_the_device(fleet, case, authorization, request)
        assert_no_foreign_jwt(caller, response, request)
    finally:
        if succeeded and case.method.upper() in ("POST", "PUT", "DELETE"):
            fleet.repair()
    case.validate_response(response, checks=CHECKS)


def aim(case: schemathesis.Case, caller: Caller, fleet: Fleet) -> None:
    """Aim the path at the fleet: mostly the admin's tree, its devices and its tokens' ids
    (which one is picked by a hash of the generated case, so the run stays reproducible).
    Changes (PUT, DELETE) go to a victim or to the caller's own token, reads to any token."""
    parameters = case.path_parameters
    if not parameters:
        return

    def pick(name: str, *choices: str) -> None:
        generated = str(parameters[name])
        options = (generated, *choices)
        # the whole case, as the boundary phase sends the same path with many bodies
        drawn = repr((name, generated, case.body, case.query)).encode()
        parameters[name] = options[zlib.crc32(drawn) % len(options)]

    pick("user", *[ADMIN] * 7)
    if "device" in parameters:
        pick("device", "dev1", "dev1", "dev2")
    changes = case.method.upper() != "GET"
    if "token" in parameters:
        own = [] if caller.jti is None or caller.device is not None else [caller.jti]
        if changes:
            pick("token", VICTIM, VICTIM, *own)
        else:
            pick("token", VICTIM, *ACCESS_IDS.values(), *own)
    if "id" in parameters:
        victim = fleet.device_victims.get(str(parameters.get("device")))
        victims = [] if victim is None else [victim, victim]
        own = [] if caller.device is None or caller.jti is None else [caller.jti]
        pick("id", *victims, *own)


def assert_creator_reaches_the_device(
    fleet: Fleet, case: schemathesis.Case, authorization: dict[str, str], request: str
) -> None:
    """A device token is never created by a caller that may not call the device's resources
    itself (issue 14, item 2): asked for one of them, the creator gets the 404 of an offline
    device, not a 403."""
    parameters = case.path_parameters or {}
    path = f"/v3/users/{parameters['user']}/devices/{parameters['device']}/resources/probe"
    probe = fleet.http.get(path, headers=authorization)
    assert probe.status_code != 403, f"{request}: the creator may not call {path} ({probe.text})"


def assert_no_foreign_jwt(caller: Caller, response: Any, request: str) -> None:
    """Only a login session may be shown the JWT of another token (issue 14, item 1)."""
    if caller.kind == SESSION:
        return
    assert len(response.content) == response.content_size, "the body was cut short"
    sent = " ".join(
        [
            str(response.request.url),
            _text(response.request.body),
            *response.request.headers.values(),
        ]
    )
    answer = " ".join([response.content.decode("utf-8", "replace"), *_header_values(response)])
    for jwt in set(JWT.findall(answer)):
        if jwt in sent:
            continue  # an echo of the request
        claims = _claims(jwt)
        if claims is not None and caller.owns(claims):
            continue
        raise AssertionError(f"{request}: the answer holds the JWT of another token, {claims}")


def _header_values(response: Any) -> list[str]:
    return [value for values in response.headers.values() for value in values]


def _text(body: bytes | str | None) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return body or ""


def _claims(jwt: str) -> dict[str, Any] | None:
    """The payload of a JWT-looking string, unverified; None if it is not JSON."""
    payload = jwt.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def test_every_kind_reached_every_token_operation() -> None:
    """Runs after the fuzz (tests run in file order): every kind called every token operation,
    and the aim works: the session got a 2xx from each of them."""
    if not ran:
        pytest.skip("the fuzz did not run (deselected)")
    operations = {
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        if "/tokens" in path
        for method in item
    }
    ran_kinds = {kind for kind, _ in ran}
    missing = {(k, o) for k in ran_kinds for o in operations if not ran[k, o]}
    assert not missing
    unreached = {o for o in operations if not any(statuses[SESSION, o, s] for s in range(200, 300))}
    assert SESSION not in ran_kinds or not unreached
    print(f"\ntoken fuzz: {sum(ran.values())} requests, answers by kind and operation:")
    for kind in KINDS:
        for operation in sorted(operations):
            by_status = {
                s: n for (k, o, s), n in sorted(statuses.items()) if (k, o) == (kind, operation)
            }
            if by_status:
                print(f"  {kind:22s} {operation:50s} {by_status}")
