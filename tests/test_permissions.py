"""The Thinger permission grammar (thinger-api.md 3.1): parsing, normalising and ``permits``."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roost.auth.permissions import (
    ACTIONS,
    BUCKET,
    DASHBOARD,
    DEVICE,
    ENDPOINT,
    ID_KINDS,
    MAX_ENTRIES,
    MAX_NAME,
    TOKEN,
    USER,
    ParsedPermissions,
    Permissions,
)
from roost.errors import InvalidInput, InvalidToken

# The two token examples of the SW-D export (thinger-api.md 3.1).
SWD_ADMIN = {"*": {"*": "*"}}
SWD_BUCKET_AND_DEVICES = {
    "Bucket": {"mqtt_bucket": ["ReadBucket"]},
    "Device": {"*": ["AccessDeviceResources"]},
}
DENY_ALL = {"*": {"*": ["*"]}}


def allow(value: object) -> Permissions:
    return Permissions.parse(value, None)


# -- the cases of the issue -------------------------------------------------------------------


def test_read_one_bucket_cannot_list_devices() -> None:
    perms = allow({"Bucket": {"b1": ["ReadBucket"]}})
    assert perms.permits("ReadBucket", BUCKET, "b1")
    assert not perms.permits("ListDevices", DEVICE, None)
    assert not perms.permits("ReadBucket", BUCKET, "b2")
    assert not perms.permits("ReadBucketConfig", BUCKET, "b1")
    assert not perms.permits("ListBuckets", BUCKET, None)


def test_read_prefix_wildcard_grants_reads_only() -> None:
    perms = allow({"Device": {"*": ["Read*"]}})
    assert perms.permits("ReadDeviceStatistics", DEVICE, "dev1")
    assert perms.permits("ReadDeviceStatus", DEVICE, "dev1")
    assert not perms.permits("DeleteDevice", DEVICE, "dev1")
    assert not perms.permits("UpdateDevice", DEVICE, "dev1")
    assert not perms.permits("ReadBucket", BUCKET, "b1")  # the type still has to match


def test_prefix_wildcard_is_a_prefix_not_a_substring() -> None:
    perms = allow({"*": {"*": ["Device*"]}})
    assert not perms.permits("ReadDeviceStatus", DEVICE, "dev1")
    assert allow({"*": {"*": ["List*"]}}).permits("ListDeviceTokens", DEVICE, "dev1")


def test_deny_on_one_device_beats_allow_on_any() -> None:
    perms = Permissions.parse({"Device": {"*": "*"}}, {"Device": {"dev1": ["DeleteDevice"]}})
    assert not perms.permits("DeleteDevice", DEVICE, "dev1")
    assert perms.permits("DeleteDevice", DEVICE, "dev2")
    assert perms.permits("UpdateDevice", DEVICE, "dev1")


def test_star_at_every_level_allows_everything() -> None:
    perms = allow({"*": {"*": ["*"]}})
    for action, resource_type in ACTIONS.items():
        assert perms.permits(action, resource_type, "x1")
        assert perms.permits(action, resource_type, None)
    assert perms.permits("AnythingAtAll", "Plugin", "prometheus-exporter")


def test_star_type_with_specific_id() -> None:
    perms = allow({"*": {"x1": ["Delete*"]}})
    assert perms.permits("DeleteDevice", DEVICE, "x1")
    assert perms.permits("DeleteBucket", BUCKET, "x1")
    assert not perms.permits("DeleteBucket", BUCKET, "x2")


def test_unknown_actions_are_accepted_and_match_nothing_real() -> None:
    # Legacy and console names from the docs and plugins, plus a made-up one.
    names = ["GetDeviceStats", "SetDeviceProperty", "ExportBucket", "FrobnicateDevice"]
    perms = allow({"*": {"*": names}})
    assert perms.to_json()[0] == {"*": {"*": names}}
    for action, resource_type in ACTIONS.items():
        assert not perms.permits(action, resource_type, "x1")
        assert not perms.permits(action, resource_type, None)


def test_unknown_types_are_accepted_and_match_only_themselves() -> None:
    perms = allow({"Plugin": {"sigfox": ["CallPluginEndpoint"]}})
    assert perms.permits("CallPluginEndpoint", "Plugin", "sigfox")
    assert not perms.permits("CallPluginEndpoint", DEVICE, "sigfox")


def test_types_are_case_sensitive_as_thinger_spells_them() -> None:
    perms = allow({"device": {"*": "*"}})
    assert not perms.permits("ListDevices", DEVICE, None)


# -- the documented examples ------------------------------------------------------------------


def test_swd_admin_token() -> None:
    perms = allow(SWD_ADMIN)
    assert perms.permits("DeleteToken", TOKEN, "t1")
    assert perms.permits("ListDevices", DEVICE, None)
    assert perms.to_json() == ({"*": {"*": ["*"]}}, {})


def test_swd_bucket_and_device_resources_token() -> None:
    perms = allow(SWD_BUCKET_AND_DEVICES)
    assert perms.permits("ReadBucket", BUCKET, "mqtt_bucket")
    assert perms.permits("AccessDeviceResources", DEVICE, "any_device")
    assert not perms.permits("WriteBucket", BUCKET, "mqtt_bucket")
    assert not perms.permits("ReadBucket", BUCKET, "other_bucket")
    assert not perms.permits("ListDevices", DEVICE, None)
    assert not perms.permits("ReadDeviceStatistics", DEVICE, "any_device")
    assert perms.to_json() == (SWD_BUCKET_AND_DEVICES, {})


def test_vscode_plugin_token() -> None:
    names = ["ListDevices", "AccessDeviceResources", "ReadDeviceStatistics"]
    perms = allow({"Device": {"*": names}})
    assert all(perms.permits(name, DEVICE, "esp32") for name in names[1:])
    assert perms.permits("ListDevices", DEVICE, None)
    assert not perms.permits("UpdateDevice", DEVICE, "esp32")


def test_read_only_everything_plus_own_plugin() -> None:
    perms = allow({"*": {"*": ["Read*", "List*"]}, "Plugin": {"prometheus-exporter": "*"}})
    assert perms.permits("ListTokens", TOKEN, None)
    assert perms.permits("ReadUserProfile", USER, "alice")
    assert not perms.permits("CreateToken", TOKEN, None)
    assert perms.permits("RunPluginCommand", "Plugin", "prometheus-exporter")
    assert not perms.permits("RunPluginCommand", "Plugin", "sigfox")


def test_project_style_id_is_a_literal() -> None:
    perms = allow({"Device": {"alice@farm": ["ReadDeviceStatus"]}})
    assert perms.permits("ReadDeviceStatus", DEVICE, "alice@farm")
    assert not perms.permits("ReadDeviceStatus", DEVICE, "alice")


# -- collections (resource_id None) -----------------------------------------------------------


def test_collection_operations_match_only_any_id() -> None:
    assert allow({"Device": {"*": ["ListDevices"]}}).permits("ListDevices", DEVICE, None)
    assert allow({"*": {"*": ["CreateDevice"]}}).permits("CreateDevice", DEVICE, None)
    assert not allow({"Device": {"dev1": ["ListDevices"]}}).permits("ListDevices", DEVICE, None)


def test_deny_on_one_id_does_not_deny_the_collection() -> None:
    perms = Permissions.parse({"Device": {"*": "*"}}, {"Device": {"dev1": "*"}})
    assert perms.permits("ListDevices", DEVICE, None)
    assert not perms.permits("ReadDeviceStatus", DEVICE, "dev1")
    denied = Permissions.parse({"Device": {"*": "*"}}, {"Device": {"*": ["ListDevices"]}})
    assert not denied.permits("ListDevices", DEVICE, None)
    assert denied.permits("ReadDeviceStatus", DEVICE, "dev1")


# -- normalisation ----------------------------------------------------------------------------


def test_empty_and_missing_grant_nothing() -> None:
    for perms in (Permissions.parse(None, None), Permissions.parse({}, {}), Permissions()):
        assert perms.to_json() == ({}, {})
        assert not perms.permits("ListDevices", DEVICE, None)
    assert not allow({"Device": {"*": []}}).permits("ListDevices", DEVICE, None)


def test_single_string_becomes_a_list_and_duplicates_go() -> None:
    perms = Permissions.parse(
        {"Device": {"d1": "ReadDeviceStatus", "d2": ["A", "B", "A"]}}, {"Token": {"*": "*"}}
    )
    assert perms.to_json() == (
        {"Device": {"d1": ["ReadDeviceStatus"], "d2": ["A", "B"]}},
        {"Token": {"*": ["*"]}},
    )


def test_object_items_are_kept_but_grant_nothing() -> None:
    items = ["ReadDeviceStatus", {"properties": ["location", "fw"]}, {"mode": "x"}]
    perms = allow({"Device": {"*": items}})
    assert perms.to_json() == ({"Device": {"*": items}}, {})
    assert perms.permits("ReadDeviceStatus", DEVICE, "d1")
    assert not perms.permits("properties", DEVICE, "d1")
    assert not allow({"Device": {"*": [{"*": "*"}]}}).permits("ListDevices", DEVICE, None)


def test_to_json_gives_fresh_objects() -> None:
    perms = allow(SWD_BUCKET_AND_DEVICES)
    perms.to_json()[0]["Device"] = {"*": ["*"]}
    assert perms.to_json() == (SWD_BUCKET_AND_DEVICES, {})


def test_permissions_are_immutable_values() -> None:
    perms = allow(SWD_ADMIN)
    assert perms == allow({"*": {"*": ["*"]}})
    assert hash(perms) == hash(allow({"*": {"*": ["*"]}}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        perms.allow = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        ACTIONS["ListDevices"] = "Bucket"  # type: ignore[index]


# -- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "allow: must be an object of resource types, not an array"),
        ("*", "allow: must be an object of resource types, not a string"),
        ({"Device": ["ListDevices"]}, 'allow["Device"]: must be an object of resource ids'),
        ({"Device": {}}, 'allow["Device"]: must name at least one resource id'),
        ({"Device": {"d1": 3}}, 'allow["Device"]["d1"]: actions must be a string or an array'),
        ({"Device": {"d1": None}}, "not null"),
        ({"Device": {"d1": ["A", ""]}}, 'allow["Device"]["d1"][1]: action must not be empty'),
        ({"Device": {"d1": ["A", True]}}, '["d1"][1]: action must be a string, not a boolean'),
        ({"Device": {"d1": [["A"]]}}, '["d1"][0]: action must be a string, not an array'),
        ({"": {"*": "*"}}, 'allow[""]: resource type must not be empty'),
        ({"Device": {"": "*"}}, 'allow["Device"][""]: resource id must not be empty'),
        ({"Dev*": {"*": "*"}}, 'allow["Dev*"]: resource type "Dev*" is not valid'),
        ({"Device": {"dev*": "*"}}, 'resource id "dev*" is not valid'),
        ({"Device": {"d 1": "*"}}, 'resource id "d 1" is not valid'),
        ({"Device": {"*": ["Read*Config"]}}, 'action "Read*Config" is not valid'),
        ({"Device": {"*": ["**"]}}, 'action "**" is not valid'),
        ({"Device": {"*": [".*"]}}, 'action ".*" is not valid'),
        ({"Device": {"*": ["Read(.*)"]}}, "is not valid"),
        ({"Device": {"*": [{"k": 1}]}}, '[0]["k"]: value must be a string, not a number'),
        ({"Device": {"*": [{"k": [1]}]}}, '[0]["k"][0]: value must be a string'),
        ({"Device": {"*": [{"": "v"}]}}, '[0][""]: name must not be empty'),
        ({"Device": {"d1": ["x" * (MAX_NAME + 1)]}}, "action is longer than 128 characters"),
        ({"x" * (MAX_NAME + 1): {"*": "*"}}, "resource type is longer than 128"),
    ],
)
def test_malformed_allow_is_rejected_naming_the_part(value: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        allow(value)
    assert message in info.value.message


def test_malformed_deny_is_named_as_deny() -> None:
    with pytest.raises(InvalidInput, match=r'^deny\["Token"\]\["t1"\]\[0\]: action'):
        Permissions.parse(SWD_ADMIN, {"Token": {"t1": [7]}})


def test_long_names_are_truncated_in_messages() -> None:
    with pytest.raises(InvalidInput) as info:
        allow({"Device": {"d" * 100 + "!": "*"}})
    assert len(info.value.message) < 250


def test_name_of_the_maximum_length_is_fine() -> None:
    name = "D" * MAX_NAME
    assert allow({name: {name: [name]}}).permits(name, name, name)


def test_entry_cap_counts_allow_and_deny_together() -> None:
    half = {"Device": {"*": [f"A{i}" for i in range(MAX_ENTRIES // 2 - 1)]}}
    deny_half = {"Device": {"*": ["ListDevices"] * (MAX_ENTRIES // 2 - 1)}}
    Permissions.parse(half, deny_half)  # 2 x (1 id + 499 actions) = 1000
    with pytest.raises(InvalidInput, match="too many permission entries"):
        Permissions.parse(half, {"Device": {"*": ["ListDevices"] * (MAX_ENTRIES // 2)}})
    with pytest.raises(InvalidInput, match=r'^allow\["Device"\]\["d1000"\]: too many'):
        allow({"Device": {f"d{i}": [] for i in range(5000)}})
    with pytest.raises(InvalidInput, match="too many"):
        allow({"Device": {"*": [{"k": ["v"] * 2000}]}})


# -- the action table -------------------------------------------------------------------------


def test_action_table_follows_appendix_a() -> None:
    expected = {
        "ListDevices": DEVICE,
        "CreateDevice": DEVICE,
        "ReadDeviceStatus": DEVICE,
        "UpdateDevice": DEVICE,
        "DeleteDevice": DEVICE,
        "ReadDeviceStatistics": DEVICE,
        "AccessDeviceResources": DEVICE,
        "ListDeviceTokens": DEVICE,
        "CreateDeviceToken": DEVICE,
        "DeleteDeviceToken": DEVICE,
        "ListTokens": TOKEN,
        "CreateToken": TOKEN,
        "ReadTokenConfig": TOKEN,
        "UpdateToken": TOKEN,
        "DeleteToken": TOKEN,
        "ReadBucket": BUCKET,
        "ReadBucketConfig": BUCKET,
        "WriteBucket": BUCKET,
        "CallEndpoint": ENDPOINT,
        "ReadDashboardConfig": DASHBOARD,
        "SubscribeUserEvents": USER,
    }
    assert {name: ACTIONS[name] for name in expected} == expected
    # Names Thinger does not use for these operations.
    assert not {"ReadToken", "ReadDeviceResources", "GetDeviceStats"} & set(ACTIONS)


def test_every_table_action_parses_as_an_action() -> None:
    perms = allow({t: {"*": [a for a, at in ACTIONS.items() if at == t]} for t in ACTIONS.values()})
    assert all(perms.permits(a, t, "x") for a, t in ACTIONS.items())


# -- properties -------------------------------------------------------------------------------

_TYPES = st.sampled_from(["*", DEVICE, BUCKET, TOKEN, USER, "Plugin"])
_ID_LIST = ["*", "dev1", "b1", "alice@farm", "prometheus-exporter"]
_IDS = st.sampled_from(_ID_LIST)
_PATTERNS = st.one_of(
    st.sampled_from(sorted(ACTIONS)),
    st.sampled_from(["*", "Read*", "List*", "Delete*", "R*", "Unknown", "GetDeviceStats"]),
)
_SIDES = st.dictionaries(
    _TYPES,
    st.dictionaries(_IDS, st.one_of(_PATTERNS, st.lists(_PATTERNS, max_size=6)), min_size=1),
    max_size=4,
)


def _deny_rules(resource_type: str) -> st.SearchStrategy[tuple[str, dict[str, object]]]:
    """Deny rules Roost can enforce: the type's own actions and prefixes that match some."""
    own = sorted(a for a, t in ACTIONS.items() if resource_type in ("*", t))
    patterns = st.sampled_from([*own, "*", "Read*", "List*", "Delete*", "R*"])
    kinds = ID_KINDS.values() if resource_type == "*" else [ID_KINDS[resource_type]]
    deniable = [i for i in _ID_LIST if i == "*" or any(kind.matches(i) for kind in kinds)]
    actions = st.one_of(patterns, st.lists(patterns, min_size=1, max_size=6))
    ids = st.dictionaries(st.sampled_from(deniable), actions, min_size=1)
    return st.tuples(st.just(resource_type), ids)


_DENY_SIDES = st.lists(
    st.sampled_from(["*", DEVICE, BUCKET, TOKEN, USER]).flatmap(_deny_rules), max_size=4
).map(dict)
_REQUESTS = st.tuples(
    st.one_of(st.sampled_from(sorted(ACTIONS)), st.text(max_size=20)),
    st.one_of(_TYPES, st.text(max_size=10)),
    st.one_of(st.none(), _IDS, st.text(max_size=10)),
)


@given(_SIDES, _REQUESTS)
def test_deny_everything_denies_every_action(
    allowed: dict[str, object], request: tuple[str, str, str | None]
) -> None:
    assert not Permissions.parse(allowed, DENY_ALL).permits(*request)


@given(_SIDES, _DENY_SIDES)
def test_to_json_round_trips(allowed: dict[str, object], denied: dict[str, object]) -> None:
    perms = Permissions.parse(allowed, denied)
    assert Permissions.parse(*perms.to_json()) == perms


@given(_SIDES, _DENY_SIDES, _REQUESTS)
def test_deny_only_removes_rights(
    allowed: dict[str, object], denied: dict[str, object], request: tuple[str, str, str | None]
) -> None:
    with_deny = Permissions.parse(allowed, denied).permits(*request)
    assert with_deny <= allow(allowed).permits(*request)
    assert with_deny == (allow(allowed).permits(*request) and not allow(denied).permits(*request))


@given(st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True), st.text(max_size=30))
def test_prefix_wildcard_is_startswith(prefix: str, action: str) -> None:
    perms = allow({"*": {"*": [prefix + "*"]}})
    assert perms.permits(action, DEVICE, "d1") == action.startswith(prefix)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(_JSON, _JSON)
def test_any_json_parses_or_raises_invalid_input(allowed: object, denied: object) -> None:
    try:
        perms = Permissions.parse(allowed, denied)
    except InvalidInput as exc:
        assert exc.message.startswith(("allow", "deny"))
    else:
        assert Permissions.parse(*perms.to_json()) == perms


# -- deny holds only what Roost enforces (issue 14, item 8) -----------------------------------


@pytest.mark.parametrize(
    ("deny", "message"),
    [
        ({"Device": {"dev1": ["AccesDeviceResources"]}}, '"AccesDeviceResources"'),
        ({"Device": {"*": ["Frob*"]}}, '"Frob*": it names no Device action'),
        ({"Device": {"*": ["ReadBucket"]}}, 'unknown action "ReadBucket"'),  # not a Device one
        ({"Token": {"*": ["Access*"]}}, '"Access*": it names no Token action'),
        ({"*": {"*": ["GetDeviceStats"]}}, '"GetDeviceStats": it names no action Roost checks'),
        ({"Devices": {"*": ["*"]}}, 'deny["Devices"]: unknown resource type "Devices"'),
        ({"Plugin": {"node-red": "*"}}, 'unknown resource type "Plugin"'),
        ({"Bucket": {"*": [{"filter": "a"}]}}, 'deny["Bucket"]["*"][0]: deny takes action names'),
    ],
)
def test_deny_rules_that_would_deny_nothing_are_refused(deny: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Permissions.parse(SWD_ADMIN, deny)
    assert message in info.value.message
    assert info.value.message.startswith("deny[")
    allow(deny)  # the same rules in allow are kept, for tokens written for the Thinger cloud


def test_deny_accepts_every_action_roost_checks_and_their_prefixes() -> None:
    for action, resource_type in ACTIONS.items():
        for deny_type in (resource_type, "*"):
            perms = Permissions.parse(SWD_ADMIN, {deny_type: {"x": [action, action[:4] + "*"]}})
            assert not perms.permits(action, resource_type, "x")
    perms = Permissions.parse(SWD_ADMIN, {"User": {"*": ["DeleteUserRefreshTokens"]}})
    assert not perms.permits("DeleteUserRefreshTokens", USER, "alice")


@pytest.mark.parametrize(
    ("deny", "message"),
    [
        (
            {"Device": {"admin@dev1": ["AccessDeviceResources"]}},
            'no Device can have the id "admin@',
        ),
        ({"Device": {"plugin:dev1": ["*"]}}, 'deny["Device"]["plugin:dev1"]: no Device can have'),
        ({"Device": {"d" * 33: ["*"]}}, "device ids are 1 to 32 characters"),
        ({"Bucket": {"b-1": ["ReadBucket"]}}, 'no Bucket can have the id "b-1"'),  # no '-'
        ({"Token": {"t" * 51: ["*"]}}, "access token ids are 1 to 50 characters"),
        ({"*": {"alice@farm": ["*"]}}, 'deny["*"]["alice@farm"]: no resource can have the id'),
        ({"Device": {"dev1": []}}, 'deny["Device"]["dev1"]: must name at least one action'),
        ({"*": {"*": []}}, 'deny["*"]["*"]: must name at least one action'),
    ],
)
def test_deny_rules_no_request_can_match_are_refused(deny: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        Permissions.parse(SWD_ADMIN, deny)
    assert message in info.value.message
    # in allow they grant nothing and are kept (empty lists included), as tokens written for the
    # Thinger cloud may hold them
    assert allow(deny).to_json()[0] == deny
    assert not any(allow(deny).permits(a, t, "dev1") for a, t in ACTIONS.items())


def test_deny_takes_every_id_a_resource_of_its_type_can_have() -> None:
    longest = {DEVICE: "d" * 32, BUCKET: "b" * 32, TOKEN: "t" * 50, USER: "u-" * 16}
    for resource_type, resource_id in longest.items():
        assert ID_KINDS[resource_type].matches(resource_id)
        for deny_type in (resource_type, "*"):
            perms = Permissions.parse(SWD_ADMIN, {deny_type: {resource_id: "*"}})
            assert not perms.permits("ListDevices", resource_type, resource_id)
            assert perms.permits("ListDevices", resource_type, "other")


def test_a_stored_deny_no_request_can_match_refuses_the_token() -> None:
    parsed = ParsedPermissions()
    denies: list[object] = [{"Device": {"admin@dev1": ["*"]}}, {"Device": {"dev1": []}}]
    for deny in denies:
        with pytest.raises(InvalidToken, match="token refused until its deny rules are fixed"):
            parsed.of(("alice", "t1"), object(), SWD_ADMIN, deny)


def test_a_stored_deny_roost_cannot_enforce_refuses_the_token() -> None:
    parsed = ParsedPermissions()
    with pytest.raises(InvalidToken, match="token refused until its deny rules are fixed"):
        parsed.of(("alice", "t1"), object(), SWD_ADMIN, {"Device": {"*": ["Frobnicate"]}})
