"""Checks on ids and fields of request bodies; each failure is an InvalidInput (400)."""

from __future__ import annotations

import re
from typing import Any

from roost.errors import InvalidInput

ID_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,32}")


def check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInput(f"invalid {what}: must match [a-zA-Z0-9_-]{{1,32}}")
    return value


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
