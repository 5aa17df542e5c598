"""The list conventions of every list route (thinger-api.md 2.20): ``count``, ``index``, ``name``.

- ``count``: at most this many items, 1 to :data:`MAX_COUNT`; absent, empty or 0: all of them
  (VSC sends ``count=0`` for all). The clients page with ``count=50`` (Node-RED) or ``count=100``
  (n8n) and stop at a short page; no total is sent, as none of them reads one.
- ``index``: the position of the first item, counted in items (the clients add the length of
  each page): 0 to :data:`MAX_INDEX`; absent or empty: 0.
- ``name``: only the items whose id or name contains it, ASCII letters in any case (a search
  box: n8n fills it as the user types); absent or empty: every item.

Each list has a stable order (its store method says which), so paging returns each item once.
Anything else is a 400, never ignored.
"""

from __future__ import annotations

import string

from starlette.requests import HTTPConnection

from roost.errors import InvalidInput
from roost.store.base import Page

MAX_COUNT = 1000
MAX_INDEX = 1_000_000_000
MAX_NAME = 128


def page_of(request: HTTPConnection) -> Page:
    """The page a list request asks for; call it after :func:`roost.api.access.authorize`."""
    query = request.query_params
    count = _number(query.get("count"), "count", MAX_COUNT)
    name = query.get("name") or None
    if name is not None and len(name) > MAX_NAME:
        raise InvalidInput(f"name must be at most {MAX_NAME} characters")
    return Page(
        count=count or None, index=_number(query.get("index"), "index", MAX_INDEX), name=name
    )


def named(name: str | None, *texts: str) -> bool:
    """The ``name`` filter on one item whose id and name are ``texts``, as the store applies it
    (SQL LIKE: ASCII letters in any case, other characters as they are)."""
    if name is None:
        return True
    wanted = name.translate(_ASCII_LOWER)
    return any(wanted in text.translate(_ASCII_LOWER) for text in texts)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _number(text: str | None, what: str, high: int) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(high))) or int(text) > high:
        raise InvalidInput(f"{what} must be a whole number from 0 to {high}")
    return int(text)
