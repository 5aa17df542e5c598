"""What every statement module of the PostgreSQL store shares: the domain errors for constraint
failures, the row count of a command, paging, and JSON text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from roost.errors import Conflict, NotFound
from roost.store.base import Page


@contextmanager
def constraints(thing: str, parent: str | None = None) -> Iterator[None]:
    """Turns a duplicate key into Conflict and a missing parent row into NotFound."""
    try:
        yield
    except asyncpg.UniqueViolationError as e:
        raise Conflict(f"{thing} exists already") from e
    except asyncpg.ForeignKeyViolationError as e:
        if parent is None:
            raise
        raise NotFound(f"{parent} does not exist") from e


def count(status: str) -> int:
    """The row count of a command's status (``UPDATE 3``, ``DELETE 0``, ``INSERT 0 1``)."""
    return int(status.rsplit(" ", 1)[-1])


def text(value: Any) -> str:
    """A JSON value as the text stored (compact, as SQLite keeps it; NaN refused)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def paged(
    sql: str, params: list[Any], page: Page, order: str, named: tuple[str, ...]
) -> tuple[str, list[Any]]:
    """``sql`` (a SELECT ending in its WHERE clause) narrowed to ``page``: the rows one of whose
    ``named`` columns contains ``page.name`` (ILIKE on "C"-collated text: ASCII letters in any
    case), in ``order``, then LIMIT and OFFSET. Column names come from the callers only."""
    params = list(params)
    if page.name:
        pattern = "%" + "".join("\\" + c if c in "\\%_" else c for c in page.name) + "%"
        params.append(pattern)
        n = len(params)
        sql += " AND (" + " OR ".join(f"{c} ILIKE ${n} ESCAPE '\\'" for c in named) + ")"
    sql += f" ORDER BY {order}"
    if page.count is not None:
        params.append(page.count)
        sql += f" LIMIT ${len(params)}"
    if page.index:
        params.append(page.index)
        sql += f" OFFSET ${len(params)}"
    return sql, params


def invalid(e: BaseException) -> str:
    """What a user is told of a value the database refused (asyncpg's DataError)."""
    message = str(e)
    if "out of" in message and "range" in message:
        return "a number is too large to be stored"
    if "surrogate" in message or "0x00" in message or "encod" in message:
        return "a text is not valid Unicode"
    return "a value cannot be stored"
