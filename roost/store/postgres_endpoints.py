"""The statements of the PostgreSQL store for endpoints."""

from __future__ import annotations

import json
from typing import Any

from roost.errors import NotFound
from roost.store.base import EVERY, Endpoint, Page
from roost.store.postgres_queries import Conn, insert, select
from roost.store.postgres_sql import constraints, count, paged, text

_COLUMNS = (
    *("owner", "endpoint", "name", "description", "enabled", "type", "config"),
    *("created", "modified"),
)
_SELECT = select("endpoints", _COLUMNS)


def _values(endpoint: Endpoint) -> list[Any]:
    return [text(endpoint.config) if c == "config" else getattr(endpoint, c) for c in _COLUMNS]


def _from(row: Any) -> Endpoint:
    owner, endpoint, name, description, enabled, kind, config, created, modified = row
    return Endpoint(
        owner, endpoint, name, description, enabled, kind, json.loads(config), created, modified
    )


async def insert_endpoint(conn: Conn, endpoint: Endpoint) -> None:
    values = _values(endpoint)
    thing = f"endpoint {endpoint.endpoint!r} of {endpoint.owner!r}"
    with constraints(thing, parent=f"user {endpoint.owner!r}"):
        await conn.execute(insert("endpoints", _COLUMNS), *values)


async def select_endpoint(conn: Conn, owner: str, endpoint: str) -> Endpoint | None:
    row = await conn.fetchrow(_SELECT + " WHERE owner = $1 AND endpoint = $2", owner, endpoint)
    return None if row is None else _from(row)


async def select_endpoints(conn: Conn, owner: str, page: Page = EVERY) -> list[Endpoint]:
    named = ("endpoint", "name")
    sql, params = paged(_SELECT + " WHERE owner = $1", [owner], page, "endpoint", named)
    return [_from(row) for row in await conn.fetch(sql, *params)]


async def update_endpoint(conn: Conn, endpoint: Endpoint) -> None:
    editable = ("name", "description", "enabled", "type", "config", "modified")
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(editable, start=3))
    values = dict(zip(_COLUMNS, _values(endpoint), strict=True))
    status = await conn.execute(
        f"UPDATE endpoints SET {sets} WHERE owner = $1 AND endpoint = $2",
        endpoint.owner,
        endpoint.endpoint,
        *(values[c] for c in editable),
    )
    if count(status) == 0:
        raise NotFound(f"endpoint {endpoint.endpoint!r} of {endpoint.owner!r} does not exist")


async def delete_endpoint(conn: Conn, owner: str, endpoint: str) -> bool:
    status = await conn.execute(
        "DELETE FROM endpoints WHERE owner = $1 AND endpoint = $2", owner, endpoint
    )
    return count(status) > 0
