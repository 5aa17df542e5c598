"""Placeholders of endpoint templates: ``{{field}}`` filled from the call data.

``{{field}}`` is the call data's ``field`` (the data must be an object), ``{{a.b}}`` a field of a
nested object (or, for a list, ``{{a.0}}`` its first item), and ``{{}}`` the call data itself (a
device sending one value, as Thinger's docs show). Spaces inside the braces are ignored. A
placeholder whose value is absent is filled with nothing (``null`` as a JSON value).

How a value is written depends on where the placeholder sits:

- in text (headers, a custom body that is not JSON): a string as it is, any other value as JSON;
- in a URL: the same text, percent-encoded (every character but ``A-Z a-z 0-9 - . _ ~``), so a
  value never adds a path, query or host of its own;
- in a JSON body: outside a JSON string, the value's JSON (``{"t": {{t}}}`` -> ``{"t": 23.5}``);
  inside a JSON string (``"{{name}}"``), the text JSON-escaped, so a value never ends the string.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
_ABSENT = object()


def lookup(data: Any, path: str) -> Any:
    """The value ``path`` (``""``, ``"a"``, ``"a.b"``, ``"a.0"``) names in ``data``, or
    ``_ABSENT``."""
    if path == "":
        return data
    value = data
    for name in path.split("."):
        if isinstance(value, dict) and name in value:
            value = value[name]
        elif isinstance(value, list) and name.isdigit() and int(name) < len(value):
            value = value[int(name)]
        else:
            return _ABSENT
    return value


def as_text(value: Any) -> str:
    """A value as text: a string as it is, nothing for an absent value, else its JSON."""
    if value is _ABSENT:
        return ""
    if isinstance(value, str):
        return value
    return _json(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fill_text(template: str, data: Any) -> str:
    return PLACEHOLDER.sub(lambda m: as_text(lookup(data, m[1])), template)


def fill_url(template: str, data: Any) -> str:
    return PLACEHOLDER.sub(lambda m: quote(as_text(lookup(data, m[1])), safe=""), template)


def fill_json(template: str, data: Any) -> str:
    """A JSON body: each placeholder written as JSON, or JSON-escaped inside a string."""
    out: list[str] = []
    in_string = False
    escaped = False
    position = 0
    while position < len(template):
        match = PLACEHOLDER.match(template, position)
        if match is not None:
            value = lookup(data, match[1])
            if in_string:
                out.append(_json(as_text(value))[1:-1])
            else:
                out.append("null" if value is _ABSENT else _json(value))
            position = match.end()
            escaped = False
            continue
        char = template[position]
        if in_string and escaped:
            escaped = False
        elif in_string and char == "\\":
            escaped = True
        elif char == '"':
            in_string = not in_string
        out.append(char)
        position += 1
    return "".join(out)
