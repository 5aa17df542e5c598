"""The statements of the SQLite store for endpoints, run on its worker thread.

The same conventions as ``sqlite_queries``: each function takes the connection first; constraint
failures become Conflict or NotFound.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import EVERY, Endpoint, Page
from roost.store.sqlite_queries import _paged

_COLUMNS = (
    *("owner", "endpoint", "name", "description", "enabled", "type", "config"),
    *("created", "modified"),
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM endpoints"


def _params(endpoint: Endpoint) -> dict[str, Any]:
    return {column: getattr(endpoint, column) for column in _COLUMNS} | {
        "enabled": int(endpoint.enabled),
        "config": json.dumps(endpoint.config, separators=(",", ":"), allow_nan=False),
    }


def _from(row: tuple[Any, ...]) -> Endpoint:
    owner, endpoint, name, description, enabled, kind, config, created, modified = row
    return Endpoint(
        owner=owner,
        endpoint=endpoint,
        name=name,
        description=description,
        enabled=bool(enabled),
        type=kind,
        config=json.loads(config),
        created=created,
        modified=modified,
    )


def insert_endpoint(conn: sqlite3.Connection, endpoint: Endpoint) -> None:
    names = ", ".join(_COLUMNS)
    values = ", ".join(f":{c}" for c in _COLUMNS)
    try:
        conn.execute(f"INSERT INTO endpoints ({names}) VALUES ({values})", _params(endpoint))
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise NotFound(f"user {endpoint.owner!r} does not exist") from None
        raise Conflict(f"endpoint {endpoint.endpoint!r} of {endpoint.owner!r} exists") from None


def select_endpoint(conn: sqlite3.Connection, owner: str, endpoint: str) -> Endpoint | None:
    sql = _SELECT + " WHERE owner = ? AND endpoint = ?"
    row = conn.execute(sql, (owner, endpoint)).fetchone()
    return None if row is None else _from(row)


def select_endpoints(conn: sqlite3.Connection, owner: str, page: Page = EVERY) -> list[Endpoint]:
    named = ("endpoint", "name")
    sql, params = _paged(_SELECT + " WHERE owner = ?", [owner], page, "endpoint", named)
    return [_from(row) for row in conn.execute(sql, params)]


def update_endpoint(conn: sqlite3.Connection, endpoint: Endpoint) -> None:
    editable = ("name", "description", "enabled", "type", "config", "modified")
    sets = ", ".join(f"{c} = :{c}" for c in editable)
    sql = f"UPDATE endpoints SET {sets} WHERE owner = :owner AND endpoint = :endpoint"
    if conn.execute(sql, _params(endpoint)).rowcount == 0:
        raise NotFound(f"endpoint {endpoint.endpoint!r} of {endpoint.owner!r} does not exist")


def delete_endpoint(conn: sqlite3.Connection, owner: str, endpoint: str) -> bool:
    sql = "DELETE FROM endpoints WHERE owner = ? AND endpoint = ?"
    return conn.execute(sql, (owner, endpoint)).rowcount > 0
