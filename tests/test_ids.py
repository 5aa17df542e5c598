"""The one grammar of ids (roost.ids): the rule of each kind, and that the API, the CLI, the
settings, the permission grammar and the OpenAPI document all follow it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from roost import ids
from roost.api.access import ACTION_TYPES
from roost.app import Roost
from roost.auth.permissions import ID_KINDS, Permissions
from roost.auth.tokens import new_token_id
from roost.config import make_settings
from roost.errors import ConfigError, InvalidInput
from roost.ids import IdKind

from conftest import ADMIN, bearer, create_device

# Not ids: what breaks every grammar, whatever the kind.
HOSTILE = [
    "",
    "..",
    ".",
    "a/b",
    "/",
    "a\x00b",
    "\x00",
    "é",
    "\uff41",  # fullwidth a
    "\u0661",  # Arabic-Indic digit one
    "\u212a",  # Kelvin sign, a K to case-insensitive unicode matching
    "a b",
    "a\n",
    "a%2F",
]

GENERATED = new_token_id()  # named by its role in the test ids: xdist workers collect alike

CASES: list[tuple[IdKind, list[str], list[str]]] = [
    (
        ids.USER,
        ["a", "admin", "A_b-9", "_", "-", "u" * 32],
        [*HOSTILE, "u" * 33, "a.b", "a@b", "a:b", "*", "a*"],
    ),
    (
        ids.DEVICE,
        ["dev1", "esp32-kitchen", "D_1", "d" * 32],
        [*HOSTILE, "d" * 33, "dev.1", "a@b", "*"],
    ),
    (
        ids.ACCESS_TOKEN,
        ["node_red_plugin", "t_" + "0" * 24, "T", "t" * 50],
        [*HOSTILE, "t" * 51, "a-b", "a@b", "*"],
    ),
    (
        ids.DEVICE_TOKEN,
        [GENERATED, "a-b_C", "t" * 64],
        [*HOSTILE, "t" * 65, "a=b", "a+b", "*"],
    ),
    *(
        (kind, ["mqtt_bucket", "b" * 32], [*HOSTILE, "b" * 33, "a-b", "a@b", "*"])
        for kind in (ids.BUCKET, ids.ENDPOINT, ids.DASHBOARD, ids.PROPERTY)
    ),
    (
        ids.EXPORT_FILE,
        ["20240725T115334Z.thinger.test.ea-eDvNc.csv", "a", "a..b", "A-_.", "f" * 128],
        [*HOSTILE, "f" * 129, ".a", "-a", "_a", ".a.csv.meta", "a/../b", "a:b", "*"],
    ),
    (
        ids.PERMISSION_TYPE,
        ["Device", "Plugin", "my-type", "*", "T" * 128],
        [*HOSTILE, "T" * 129, "Dev*", "**", "a:b", "a@b"],
    ),
    (
        ids.PERMISSION_ID,
        ["dev1", "*", "alice@farm", "prometheus-exporter", "a:b", "i" * 128],
        [*HOSTILE, "i" * 129, "dev*", "**", "*a"],
    ),
    (
        ids.ACTION,
        ["ReadBucket", "Read*", "*", "a" * 128, "a" * 127 + "*"],
        [*HOSTILE, "a" * 129, "a" * 128 + "*", "Read*Config", "**", ".*", "Read(.*)", "a-b"],
    ),
]


def label(value: str) -> str:
    return "generated" if value is GENERATED else repr(value[:12])


TABLE = [
    pytest.param(kind, value, valid, id=f"{kind.name}-{'ok' if valid else 'bad'}-{label(value)}")
    for kind, good, bad in CASES
    for valid, values in ((True, good), (False, bad))
    for value in values
]


def ecma(pattern: str) -> re.Pattern[str]:
    """An OpenAPI pattern as ECMA-262 reads it: its ``$`` matches at the very end only (Python's
    also before a final newline)."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return re.compile(pattern[:-1] + r"\Z")


@pytest.mark.parametrize(("kind", "value", "valid"), TABLE)
def test_grammar(kind: IdKind, value: str, valid: bool) -> None:
    assert kind.matches(value) is valid
    assert (ecma(kind.pattern).search(value) is not None) is valid  # the OpenAPI rule agrees
    if valid:
        assert ids.validate(kind, value) == value
    else:
        with pytest.raises(InvalidInput) as raised:
            ids.validate(kind, value)
        assert raised.value.message == ids.message(kind)
        assert raised.value.message.startswith(f"invalid {kind.name}: must be ")
        assert "\n" not in raised.value.message


@pytest.mark.parametrize("kind", [kind for kind, _, _ in CASES], ids=lambda k: k.name)
def test_non_strings_are_refused(kind: IdKind) -> None:
    for value in (None, 1, ["a"], b"a"):
        with pytest.raises(InvalidInput):
            ids.validate(kind, value)


def test_permission_ids_accept_every_id_the_api_accepts() -> None:
    assert set(ACTION_TYPES.values()) <= set(ID_KINDS), "an action's type without a kind of id"
    for kind in ids.API_KINDS:
        assert set(kind.punctuation) <= set(ids.PERMISSION_ID.punctuation), kind
        assert kind.max_length <= ids.PERMISSION_ID.max_length, kind
    for resource_type, kind in ID_KINDS.items():
        good = next(g for k, g, _ in CASES if k == kind)
        allow = {resource_type: {value: ["*"] for value in good}}
        parsed = Permissions.parse(allow, None)
        assert all(parsed.permits("AnyAction", resource_type, value) for value in good)


# -- the OpenAPI document --------------------------------------------------------------------

PATH_PARAMETERS = {
    "user": ids.USER,
    "device": ids.DEVICE,
    "token": ids.ACCESS_TOKEN,  # /v1/users/{user}/tokens/{token}
    "id": ids.DEVICE_TOKEN,  # /v1/users/{user}/devices/{device}/tokens/{id}
    "bucket": ids.BUCKET,  # /v1/users/{user}/buckets/{bucket}
    "endpoint": ids.ENDPOINT,  # /v1/users/{user}/endpoints/{endpoint}
    "property": ids.PROPERTY,  # /v3/users/{user}/devices/{device}/properties/{property}
    "file": ids.EXPORT_FILE,  # /v1/users/{user}/buckets/{bucket}/exports/{file}
}
RESOURCE_PATH = "^[^/]{1,128}(/[^/]{1,128}){0,15}$"  # a path of resource names, not an id


def _patterns(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield where, value
            else:
                yield from _patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _patterns(value, f"{where}/{index}")


async def test_openapi_patterns_are_the_grammar(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    seen = set()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for param in operation.get("parameters", []):
                pattern = param["schema"].get("pattern")
                if param["in"] == "path" and param["name"] != "resource":
                    kind = PATH_PARAMETERS[param["name"]]
                    assert pattern == kind.pattern, (method, path, param["name"])
                    seen.add(param["name"])
                if param["in"] == "query" and param["name"] == "id":
                    assert pattern == ids.DEVICE.pattern, (method, path)
                    seen.add("?id")
    assert seen == {*PATH_PARAMETERS, "?id"}
    assert "/devices/{device}/tokens/{id}" in next(p for p in doc["paths"] if "{id}" in p)
    schemas = doc["components"]["schemas"]
    for schema, field, kind in [
        ("DeviceCreate", "device", ids.DEVICE),
        ("DeviceCreate", "device_id", ids.DEVICE),
        ("Device", "device", ids.DEVICE),
        ("AccessTokenCreate", "token", ids.ACCESS_TOKEN),
        ("DeviceProperty", "property", ids.PROPERTY),
    ]:
        assert schemas[schema]["properties"][field]["pattern"] == kind.pattern, (schema, field)
    for side in ("allow", "deny"):
        permission = schemas["AccessTokenCreate"]["properties"][side]
        assert permission["propertyNames"]["pattern"] == ids.PERMISSION_TYPE.pattern
        resource_ids = permission["additionalProperties"]
        assert resource_ids["propertyNames"]["pattern"] == ids.PERMISSION_ID.pattern
        action = resource_ids["additionalProperties"]["anyOf"][0]
        assert action["pattern"] == ids.ACTION.pattern
    # and no pattern anywhere in the document is written by hand
    grammar = {kind.pattern for kind, _, _ in CASES}
    for where, pattern in _patterns(doc):
        assert pattern in grammar or pattern == RESOURCE_PATH, (where, pattern)


# -- the API, the CLI, the settings and the permission grammar agree --------------------------

# (user name, may it go in a URL path as is: "/" and ".." would be read as the path's)
USER_NAMES = [("alice", True), ("A_b-9", True), ("u" * 32, True)]
BAD_USER_NAMES = [("u" * 33, True), ("a.b", True), ("a b", True), ("é", True), ("a@b", True)]
BAD_USER_NAMES += [("..", False), ("a/b", False), ("", False)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "roost.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_user_names_one_rule_everywhere(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    data_dir = str(server.settings.data_dir)
    refused = ids.message(ids.USER)
    for name, _ in USER_NAMES:
        assert Permissions.parse({"User": {name: ["ReadUserProfile"]}}, None).allow
        assert make_settings({"admin_user": name}).admin_user == name
        listed = await http.get(f"/v1/users/{quote(name)}/devices", headers=bearer(admin_token))
        assert listed.status_code == 200, (name, listed.text)
    added = run_cli("--data-dir", data_dir, "user", "add", "A_b-9", "--password", "secret-pw")
    assert added.returncode == 0, added.stderr
    for name, in_path in BAD_USER_NAMES:
        with pytest.raises(ConfigError, match=re.escape(refused)):
            make_settings({"admin_user": name})
        if in_path:
            url = f"/v1/users/{quote(name)}/devices"
            answer = await http.get(url, headers=bearer(admin_token))
            assert answer.status_code == 400, name
            assert answer.json() == {"error": {"message": refused}}, name
        if name not in ("u" * 33, "a@b"):  # the permission grammar is wider, never narrower
            with pytest.raises(InvalidInput, match="resource id"):
                Permissions.parse({"User": {name: ["ReadUserProfile"]}}, None)
    for name in ("..", "a/b", "é", "u" * 33):
        result = run_cli("--data-dir", data_dir, "user", "add", name, "--password", "secret-pw")
        assert result.returncode != 0, name
        assert result.stderr == f"roost: {refused}\n", name  # one line, no traceback
        assert result.stdout == ""


async def test_ids_in_bodies_paths_and_queries_one_rule(
    server: Roost, http: httpx.AsyncClient, admin_token: str
) -> None:
    auth = bearer(admin_token)
    devices = f"/v1/users/{ADMIN}/devices"
    device = ids.message(ids.DEVICE)
    for bad in ("..", "a/b", "a.b", "é", "d" * 33, "a\x00b"):
        created = await http.post(
            devices, json={"device": bad, "credentials": "secret1"}, headers=auth
        )
        assert (created.status_code, created.json()) == (400, {"error": {"message": device}}), bad
    for bad in ("a.b", "é", "d" * 33):
        listed = await http.get(devices, params={"id": bad}, headers=auth)
        assert (listed.status_code, listed.json()) == (400, {"error": {"message": device}}), bad
        called = await http.get(f"{devices}/{quote(bad)}", headers=auth)
        assert (called.status_code, called.json()) == (400, {"error": {"message": device}}), bad
    await create_device(http, admin_token, "dev-1")
    listed = await http.get(devices, params={"id": "dev-1"}, headers=auth)
    assert [d["device"] for d in listed.json()] == ["dev-1"]
    # an access token id is Thinger's [a-zA-Z0-9_]{1,50}, in the body that creates it and in paths
    token = ids.message(ids.ACCESS_TOKEN)
    tokens = f"/v1/users/{ADMIN}/tokens"
    for bad in ("a-b", "a.b", "t" * 51):
        created = await http.post(tokens, json={"token": bad}, headers=auth)
        assert (created.status_code, created.json()) == (400, {"error": {"message": token}}), bad
        read = await http.get(f"{tokens}/{bad}", headers=auth)
        assert (read.status_code, read.json()) == (400, {"error": {"message": token}}), bad
    # a device token id is checked before the store is asked
    device_token = ids.message(ids.DEVICE_TOKEN)
    for bad in ("a.b", "a=b", "t" * 65):
        deleted = await http.delete(f"{devices}/dev-1/tokens/{bad}", headers=auth)
        assert deleted.status_code == 400, bad
        assert deleted.json() == {"error": {"message": device_token}}, bad
    missing = await http.delete(f"{devices}/dev-1/tokens/{new_token_id()}", headers=auth)
    assert missing.status_code == 404


# -- no second copy of the grammar -----------------------------------------------------------

ROOST = Path(__file__).resolve().parent.parent / "roost"
# A character class of ASCII letters (both cases: an id or name rule), or a unicode word class.
ID_REGEX = re.compile(r"\[[^\]\n]*(?:a-z[^\]\n]*A-Z|A-Z[^\]\n]*a-z)|\\w")
GRAMMAR_HOME = {ROOST / "ids.py"}


def test_no_id_regex_outside_the_grammar() -> None:
    found = [
        f"{path.relative_to(ROOST.parent)}:{number}: {line.strip()}"
        for path in sorted(ROOST.rglob("*.py"))
        if path not in GRAMMAR_HOME
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ID_REGEX.search(line)
    ]
    assert found == [], "a rule for ids belongs in roost/ids.py:\n" + "\n".join(found)
    assert ID_REGEX.search((ROOST / "ids.py").read_text())  # the check can see one
