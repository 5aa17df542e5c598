"""The Thinger permission grammar of user access tokens: parse allow/deny, answer ``permits``.

Pure: no I/O, no clock, no logging. The grammar (thinger-api.md section 3.1) is two levels of JSON
objects, resource type -> resource id -> actions::

    {"Bucket": {"mqtt_bucket": ["ReadBucket"]}, "Device": {"*": ["AccessDeviceResources"]}}

- Resource types are matched exactly as Thinger spells them (``Device``, ``Bucket``, ``Token``,
  ``User``, ...; case-sensitive); ``*`` is any type. Unknown types (``Plugin``, ``Project``) are
  accepted in ``allow`` and only ever match actions of that type.
- Resource ids are matched exactly; ``*`` is any id. The doc allows no other wildcard in ids, so
  ``dev*`` is rejected rather than silently taken as a literal. ``owner@project`` ids are literals.
  Types, ids and actions follow :mod:`roost.ids` (``PERMISSION_TYPE``, ``PERMISSION_ID``,
  ``ACTION``); a resource id accepts every id the API accepts (:data:`ID_KINDS`).
- Actions are a single string or an array. ``*`` is every action and ``Read*`` is a prefix
  wildcard (any action starting with ``Read``); anything else is matched exactly, never as a
  regex. Unknown action names are accepted in ``allow`` and simply never match an action Roost
  checks, so tokens written for the Thinger cloud keep working.
- Object items inside an action array (``{"name": "x"}`` or ``{"name": ["x", "y"]}``) have no
  documented meaning. They are validated for shape, kept so that :meth:`Permissions.to_json`
  gives them back, and never grant or deny anything.
- Operations on a collection (``ListDevices``, ``CreateDevice``, ...) are asked with
  ``resource_id=None``, which only entries with id ``*`` match (the documented tokens grant them
  as ``Device: {"*": [...]}``). A deny on one id therefore does not deny listing the collection.
- Deny beats allow: a request is permitted iff some allow entry matches and no deny entry does.
- ``deny`` holds only what Roost can enforce, since a rule that matches nothing fails open (a typo
  such as ``AccesDeviceResources`` would deny nothing): its types are known ones or ``*``, each
  id is ``*`` or one that a resource of its type can have (:data:`ID_KINDS`; for type ``*``, any
  known type), each id names at least one action, each action (or ``Read*``-style prefix) names
  at least one action of its type that Roost checks (:data:`ACTIONS`), and it holds no object
  items. Anything else is refused, naming the part. ``allow`` keeps such ids and empty action
  lists: they grant nothing, and tokens written for the Thinger cloud keep working.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

from roost import ids as grammar
from roost.errors import InvalidInput, InvalidToken
from roost.ids import IdKind

ANY = "*"
MAX_ENTRIES = 1000  # resource ids + action items + strings inside object items, allow and deny
MAX_NAME = 128  # characters in any type, id, action or object item name

# Resource types, spelled as in thinger-api.md 3.1 (the spec tag in the singular).
DEVICE = "Device"
BUCKET = "Bucket"
ENDPOINT = "Endpoint"
DASHBOARD = "Dashboard"
TOKEN = "Token"
USER = "User"


def _actions_of(resource_type: str, names: str) -> dict[str, str]:
    return dict.fromkeys(names.split(), resource_type)


# Action name (the operation summary of Appendix A) -> the resource type it is checked against.
ACTIONS: Mapping[str, str] = MappingProxyType(
    _actions_of(
        DEVICE,
        """ListDevices CreateDevice ReadDeviceStatus UpdateDevice DeleteDevice
        UpdateDeviceProjects CloneDevice CloneDeviceConfig ReadDeviceStatistics
        AccessDeviceResources ListDeviceTokens CreateDeviceToken DeleteDeviceToken
        ListDeviceProperties CreateDeviceProperty ReadDeviceProperty UpdateDeviceProperty
        DeleteDeviceProperty DeleteDeviceProperties ReadDeviceCallbackConfig UpdateDeviceCallback
        CallDeviceCallback ReadDeviceCallbackResponse ListDeviceBuckets ReadDeviceBucket""",
    )
    | _actions_of(
        BUCKET,
        """ListBuckets CreateBucket ReadBucketConfig UpdateBucket DeleteBucket
        UpdateBucketProjects WriteBucket ReadBucket ListBucketExports CreateBucketExport
        ReadBucketExport DeleteBucketExport CreateBucketImport ListBucketTags ReadBucketTag
        ClearBucket""",
    )
    | _actions_of(
        ENDPOINT,
        """ListEndpoints CreateEndpoint ReadEndpointConfig UpdateEndpoint DeleteEndpoint
        CallEndpoint UpdateEndpointProjects""",
    )
    | _actions_of(
        DASHBOARD,
        """ListDashboards CreateDashboard ReadDashboardConfig UpdateDashboard DeleteDashboard
        UpdateDashboardProjects""",
    )
    | _actions_of(
        TOKEN,
        "ListTokens CreateToken ReadTokenConfig UpdateToken DeleteToken UpdateTokenProjects",
    )
    | _actions_of(
        USER,
        """ReadUserConfig UpdateUser DeleteUser ListUsers CreateUser ReadUserProfile
        UpdateUserProfile ReadUserEmail UpdateUserPassword ReadUserTimezone UpdateUserTimezone
        ReadUserLimits ReadUserStatistics ListDeviceLocations SubscribeUserEvents""",
    )
    # Roost's own, where Thinger has no operation
    | _actions_of(USER, "DeleteUserRefreshTokens ReadServerMetrics")
)
KNOWN_TYPES = frozenset(ACTIONS.values())

# The kind of id (roost.ids) of each resource type that actions are checked against: what the API
# accepts as such an id. A resource id in allow or deny is a wider roost.ids.PERMISSION_ID.
ID_KINDS: Mapping[str, IdKind] = MappingProxyType(
    {
        DEVICE: grammar.DEVICE,
        BUCKET: grammar.BUCKET,
        ENDPOINT: grammar.ENDPOINT,
        DASHBOARD: grammar.DASHBOARD,
        TOKEN: grammar.ACCESS_TOKEN,
        USER: grammar.USER,
    }
)

# The value of one field of an object item: a string or strings.
OpaqueValue: TypeAlias = str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OpaqueItem:
    """An object inside an action array: kept for round trips, never matched."""

    fields: tuple[tuple[str, OpaqueValue], ...]


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``type -> id -> [items]`` line of ``allow`` or ``deny``."""

    resource_type: str
    resource_id: str
    items: tuple[str | OpaqueItem, ...]

    def matches(self, action: str, resource_type: str, resource_id: str | None) -> bool:
        if self.resource_type not in (ANY, resource_type):
            return False
        if self.resource_id != ANY and self.resource_id != resource_id:
            return False
        return any(isinstance(item, str) and _action_matches(item, action) for item in self.items)


def _action_matches(pattern: str, action: str) -> bool:
    if pattern.endswith(ANY):
        return action.startswith(pattern[:-1])
    return pattern == action


@dataclass(frozen=True, slots=True)
class Permissions:
    """The normalised ``allow`` and ``deny`` of a token (or role, or member)."""

    allow: tuple[Entry, ...] = ()
    deny: tuple[Entry, ...] = ()

    @classmethod
    def parse(cls, allow: object, deny: object) -> Permissions:
        """Validate the JSON shapes of ``allow`` and ``deny`` (``None`` = empty) and normalise.

        Raises :class:`InvalidInput` naming the offending part, e.g. ``allow["Device"]["d1"][2]``.
        """
        budget = _Budget()
        return cls(_parse_side("allow", allow, budget), _parse_side("deny", deny, budget))

    def to_json(self) -> tuple[dict[str, object], dict[str, object]]:
        """``(allow, deny)`` as fresh JSON objects; action values are always arrays."""
        return _side_to_json(self.allow), _side_to_json(self.deny)

    def permits(self, action: str, resource_type: str, resource_id: str | None) -> bool:
        """May ``action`` be done on ``resource_type``/``resource_id`` (None = the collection)?"""
        return any(e.matches(action, resource_type, resource_id) for e in self.allow) and not any(
            e.matches(action, resource_type, resource_id) for e in self.deny
        )


class ParsedPermissions:
    """The permissions of stored token records, parsed once per record rather than per request.

    Keyed by the token, and valid while the store hands back the very same record object: the
    store keeps a record unchanged until that token is written (roost.store.memo), and a record
    read again is a new object, parsed again.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._parsed: dict[Hashable, tuple[object, Permissions]] = {}

    def of(self, token: Hashable, record: object, allow: object, deny: object) -> Permissions:
        kept = self._parsed.get(token)
        if kept is not None and kept[0] is record:
            return kept[1]
        try:
            permissions = Permissions.parse(allow, deny)
        except InvalidInput as exc:  # a deny rule stored before deny rules were checked
            raise InvalidToken(
                f"token refused until its deny rules are fixed: {exc.message}"
            ) from None
        if len(self._parsed) >= self._limit:
            self._parsed.clear()
        self._parsed[token] = (record, permissions)
        return permissions


# -- parsing ----------------------------------------------------------------------------------


class _Budget:
    """Counts entries across allow and deny so absurd documents stop early."""

    def __init__(self) -> None:
        self.used = 0

    def spend(self, where: str) -> None:
        self.used += 1
        if self.used > MAX_ENTRIES:
            raise InvalidInput(f"{where}: too many permission entries (at most {MAX_ENTRIES})")


def _parse_side(side: str, value: object, budget: _Budget) -> tuple[Entry, ...]:
    if value is None:
        return ()
    entries: list[Entry] = []
    for type_key, ids_value in _mapping(side, value, "resource types").items():
        type_path = _at(side, type_key)
        resource_type = _name(type_path, type_key, grammar.PERMISSION_TYPE)
        deny_type = resource_type if side == "deny" else None
        if deny_type not in (None, ANY) and deny_type not in KNOWN_TYPES:
            raise InvalidInput(
                f"{type_path}: unknown resource type {_quote(resource_type)}: a deny rule on it"
                f" would deny nothing (known: {', '.join(sorted(KNOWN_TYPES))}, or '*')"
            )
        ids = _mapping(type_path, ids_value, "resource ids")
        if not ids:
            raise InvalidInput(f"{type_path}: must name at least one resource id")
        for id_key, items_value in ids.items():
            id_path = _at(type_path, id_key)
            resource_id = _name(id_path, id_key, grammar.PERMISSION_ID)
            if deny_type is not None:
                _check_deniable_id(id_path, resource_id, deny_type)
            budget.spend(id_path)
            items = _items(id_path, items_value, budget, deny_type)
            entries.append(Entry(resource_type, resource_id, items))
    return tuple(entries)


def _mapping(where: str, value: object, what: str) -> Mapping[object, object]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{where}: must be an object of {what}, not {_kind(value)}")
    return value


def _items(
    where: str, value: object, budget: _Budget, deny_type: str | None
) -> tuple[str | OpaqueItem, ...]:
    """The action items of one id; ``deny_type``: of a deny rule, whose items must be enforced."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"{where}: actions must be a string or an array, not {_kind(value)}")
    if deny_type is not None and not value:
        raise InvalidInput(f"{where}: must name at least one action: an empty deny denies nothing")
    items: dict[str | OpaqueItem, None] = {}  # ordered, without duplicates
    for index, item in enumerate(value):
        item_path = f"{where}[{index}]"
        budget.spend(item_path)
        if isinstance(item, Mapping):
            if deny_type is not None:
                raise InvalidInput(
                    f"{item_path}: deny takes action names; an object would deny nothing"
                )
            items[_opaque(item_path, item, budget)] = None
        else:
            action = _name(item_path, item, grammar.ACTION)
            if deny_type is not None:
                _check_deniable(item_path, action, deny_type)
            items[action] = None
    return tuple(items)


def _check_deniable_id(where: str, resource_id: str, resource_type: str) -> None:
    """A deny id must be ``*`` or an id that a resource of its type can have (roost.ids): the API
    refuses any other id before permissions are asked, so a rule on it would match nothing."""
    kinds = tuple(ID_KINDS.values()) if resource_type == ANY else (ID_KINDS[resource_type],)
    if resource_id == ANY or any(kind.matches(resource_id) for kind in kinds):
        return
    what = "no resource" if resource_type == ANY else f"no {resource_type}"
    rule = "" if resource_type == ANY else f" ({kinds[0].name}s are {kinds[0].description})"
    raise InvalidInput(
        f"{where}: {what} can have the id {_quote(resource_id)}, so a deny rule on it would deny"
        f" nothing{rule}"
    )


def _check_deniable(where: str, pattern: str, resource_type: str) -> None:
    """A deny action must match some action of its type that Roost checks."""
    if any(
        _action_matches(pattern, action)
        for action, action_type in ACTIONS.items()
        if resource_type in (ANY, action_type)
    ):
        return
    of_type = "" if resource_type == ANY else f" {resource_type}"
    raise InvalidInput(
        f"{where}: unknown action {_quote(pattern)}: it names no{of_type} action Roost checks,"
        " so a deny rule with it would deny nothing"
    )


def _opaque(where: str, value: Mapping[object, object], budget: _Budget) -> OpaqueItem:
    fields: list[tuple[str, OpaqueValue]] = []
    for key, field in value.items():
        path = _at(where, key)
        budget.spend(path)
        name = _text(path, key, "name")
        if isinstance(field, list | tuple):
            texts: list[str] = []
            for index, text in enumerate(field):
                budget.spend(f"{path}[{index}]")
                texts.append(_text(f"{path}[{index}]", text, "value"))
            fields.append((name, tuple(texts)))
        else:
            fields.append((name, _text(path, field, "value")))
    return OpaqueItem(tuple(fields))


def _name(where: str, value: object, kind: IdKind) -> str:
    """A type, id or action name, by its grammar in roost.ids (which allows ``*``)."""
    name = _text(where, value, kind.name)
    if not kind.matches(name):
        raise InvalidInput(f"{where}: {kind.name} {_quote(name)} is not valid: {kind.description}")
    return name


def _text(where: str, value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {what} must be a string, not {_kind(value)}")
    if not value:
        raise InvalidInput(f"{where}: {what} must not be empty")
    if len(value) > MAX_NAME:
        raise InvalidInput(f"{where}: {what} is longer than {MAX_NAME} characters")
    return value


def _at(path: str, key: object) -> str:
    return f"{path}[{_quote(key)}]" if isinstance(key, str) else f"{path}[<{_kind(key)} key>]"


def _quote(text: str) -> str:
    return json.dumps(text if len(text) <= 40 else text[:40] + "...")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


# -- back to JSON -----------------------------------------------------------------------------


def _side_to_json(entries: tuple[Entry, ...]) -> dict[str, object]:
    out: dict[str, dict[str, list[object]]] = {}
    for entry in entries:
        out.setdefault(entry.resource_type, {})[entry.resource_id] = list(_items_to_json(entry))
    return dict(out)


def _items_to_json(entry: Entry) -> Iterator[object]:
    for item in entry.items:
        if isinstance(item, str):
            yield item
        else:
            yield {name: v if isinstance(v, str) else list(v) for name, v in item.fields}
