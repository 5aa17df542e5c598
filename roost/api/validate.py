"""Checks on fields of request bodies; each failure is an InvalidInput (400). Ids are checked by
:func:`roost.ids.validate`."""

from __future__ import annotations

from typing import Any

from roost.errors import InvalidInput
from roost.store.aggregate import MAX_TS


def optional_str(body: dict[str, Any], *names: str, limit: int = 1024) -> str | None:
    """The first of ``names`` present in ``body``, checked to be a string of at most ``limit``."""
    for name in names:
        if name in body and body[name] is not None:
            value = body[name]
            if not isinstance(value, str) or len(value) > limit:
                raise InvalidInput(f"{name} must be a string of at most {limit} characters")
            return value
    return None


def optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false")
    return value


TEXT_LIMIT = 255  # a name or description, as Thinger's resource_name / resource_description


def text(body: dict[str, Any], name: str, default: str) -> str:
    """A name or description: a string of at most ``TEXT_LIMIT``, or ``default`` when absent."""
    value = optional_str(body, name, limit=TEXT_LIMIT)
    return default if value is None else value


def described(body: dict[str, Any], default_name: str) -> dict[str, Any]:
    """The settings every asset has, for a new one: ``name`` (absent: ``default_name``),
    ``description`` (absent: empty) and ``enabled`` (absent: true), checked."""
    return {
        "name": text(body, "name", default=default_name),
        "description": text(body, "description", default=""),
        "enabled": optional_bool(body, "enabled") is not False,
    }


def described_changes(body: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """What a PUT changes of the settings every asset has (``name``, ``description``,
    ``enabled``), and its ``modified`` time: the fields given, checked."""
    changes: dict[str, Any] = {"modified": now_ms}
    for field in ("name", "description"):
        if body.get(field) is not None:
            changes[field] = text(body, field, default="")
    enabled = optional_bool(body, "enabled")
    if enabled is not None:
        changes["enabled"] = enabled
    return changes


def timestamp(value: object, name: str) -> int:
    """A ts in a body or query (``ts``, ``min_ts``, ``max_ts``): a whole number of ms from 0 to
    :data:`~roost.store.aggregate.MAX_TS`, the one rule every route that takes one applies."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_TS:
        raise InvalidInput(f"{name} must be a whole number of ms from 0 to {MAX_TS}")
    if value != int(value):
        raise InvalidInput(f"{name} must be a whole number of ms from 0 to {MAX_TS}")
    return int(value)
