"""One JSON form for the resource listings of both protocols.

Legacy devices list ``{name: {"al": access, "fn": kind, "/": {sub-resources}}}``; IOTMP devices
list ``{name: {"fn": kind}}`` with nested resources as "a/b" names. ``/v2/.../api`` answers the
legacy form for both (IOTMP entries get ``"al": 0``, nested names become "/" sub-objects);
``/v3/.../resources`` answers the flat form documented in the OpenAPI document:
``{"a/b": {"fn": kind, "type": "output"}}`` for every resource that has a kind.
"""

from __future__ import annotations

from typing import Any

from roost.wire.pson import PsonValue

KINDS = {0: "none", 1: "run", 2: "input", 3: "output", 4: "input_output", 5: "stream"}


def legacy_listing(listing: PsonValue) -> dict[str, Any]:
    """The nested legacy form, whichever protocol produced ``listing``."""
    result: dict[str, Any] = {}
    for path, entry in _entries(listing, ()):
        node = result
        for part in path[:-1]:
            parent = node.setdefault(part, {"al": 0, "fn": 0})
            node = parent.setdefault("/", {})
        current = node.setdefault(path[-1], {})
        current["al"] = entry.get("al", 0)
        current["fn"] = entry.get("fn", 0)
    return result


def flat_listing(listing: PsonValue) -> dict[str, Any]:
    """``{"a/b": {"fn": kind, "type": name}}`` for every resource with a kind."""
    result: dict[str, Any] = {}
    for path, entry in _entries(listing, ()):
        kind = entry.get("fn", 0)
        if kind:
            result["/".join(path)] = {"fn": kind, "type": KINDS.get(kind, "unknown")}
    return result


def _entries(
    listing: PsonValue, prefix: tuple[str, ...]
) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every (path, {"al"?, "fn"}) in a listing of either form, parents before children."""
    if not isinstance(listing, dict):
        return []
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for name, entry in listing.items():
        if not isinstance(entry, dict):
            continue
        path = prefix + tuple(part for part in name.split("/") if part)
        if not path:
            continue
        found.append((path, {k: v for k, v in entry.items() if k in ("al", "fn") and _is_int(v)}))
        found.extend(_entries(entry.get("/"), path))
    return found


def _is_int(value: PsonValue) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
