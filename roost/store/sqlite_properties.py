"""The statements of the SQLite store for device properties, run on its worker thread.

Apart from ``sqlite_queries`` (one module, one job, under ~400 lines); the same conventions:
each function takes the connection first, constraint failures become Conflict or NotFound.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import DeviceProperty

_COLUMNS = (
    *("owner", "device", "property", "name", "description", "type", "value"),
    *("created", "modified"),
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM device_properties"


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _params(prop: DeviceProperty) -> dict[str, Any]:
    return {column: getattr(prop, column) for column in _COLUMNS} | {"value": _text(prop.value)}


def _from(row: tuple[Any, ...]) -> DeviceProperty:
    owner, device, prop, name, description, type_, value, created, modified = row
    return DeviceProperty(
        owner, device, prop, name, description, type_, json.loads(value), created, modified
    )


def _check_room(conn: sqlite3.Connection, owner: str, device: str, limit: int) -> None:
    """NotFound without the device, Conflict when it holds ``limit`` properties already."""
    if (
        conn.execute(
            "SELECT 1 FROM devices WHERE owner = ? AND device = ?", (owner, device)
        ).fetchone()
        is None
    ):
        raise NotFound(f"device {device!r} of {owner!r} does not exist")
    (count,) = conn.execute(
        "SELECT COUNT(*) FROM device_properties WHERE owner = ? AND device = ?", (owner, device)
    ).fetchone()
    if count >= limit:
        raise Conflict(f"device {device!r} holds {limit} properties already")


def _begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def _finish(conn: sqlite3.Connection, ok: bool) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT" if ok else "ROLLBACK")


def select_properties(conn: sqlite3.Connection, owner: str, device: str) -> list[DeviceProperty]:
    sql = _SELECT + " WHERE owner = ? AND device = ? ORDER BY property"
    return [_from(row) for row in conn.execute(sql, (owner, device))]


def select_property(
    conn: sqlite3.Connection, owner: str, device: str, prop: str
) -> DeviceProperty | None:
    sql = _SELECT + " WHERE owner = ? AND device = ? AND property = ?"
    row = conn.execute(sql, (owner, device, prop)).fetchone()
    return None if row is None else _from(row)


def insert_property(conn: sqlite3.Connection, prop: DeviceProperty, limit: int) -> None:
    params = _params(prop)  # before the transaction: a value JSON cannot hold fails here
    _begin(conn)
    ok = False
    try:
        key = (prop.owner, prop.device, prop.property)
        if conn.execute(
            _SELECT + " WHERE owner = ? AND device = ? AND property = ?", key
        ).fetchone():
            raise Conflict(f"property {prop.property!r} exists already")
        _check_room(conn, prop.owner, prop.device, limit)
        names = ", ".join(_COLUMNS)
        values = ", ".join(":" + c for c in _COLUMNS)
        sql = f"INSERT INTO device_properties ({names}) VALUES ({values})"
        try:
            conn.execute(sql, params)
        except sqlite3.IntegrityError as e:
            if e.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
                raise Conflict(f"property {prop.property!r} exists already") from e
            raise
        ok = True
    finally:
        _finish(conn, ok)


def update_property(conn: sqlite3.Connection, prop: DeviceProperty) -> None:
    cursor = conn.execute(
        "UPDATE device_properties SET name = :name, description = :description, type = :type,"
        " value = :value, modified = :modified"
        " WHERE owner = :owner AND device = :device AND property = :property",
        _params(prop),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"property {prop.property!r} of device {prop.device!r} does not exist")


def set_property_value(
    conn: sqlite3.Connection,
    owner: str,
    device: str,
    prop: str,
    value: Any,
    now: int,
    limit: int,
) -> None:
    text = _text(value)
    key = (owner, device, prop)
    update = (
        "UPDATE device_properties SET value = ?, modified = ?"
        " WHERE owner = ? AND device = ? AND property = ?"
    )
    if conn.execute(update, (text, now, *key)).rowcount:
        return
    _begin(conn)
    ok = False
    try:
        if conn.execute(update, (text, now, *key)).rowcount == 0:  # still absent: create it
            _check_room(conn, owner, device, limit)
            conn.execute(
                "INSERT INTO device_properties (owner, device, property, name, description,"
                " type, value, created, modified) VALUES (?, ?, ?, '', '', '', ?, ?, ?)",
                (*key, text, now, now),
            )
        ok = True
    finally:
        _finish(conn, ok)


def delete_property(conn: sqlite3.Connection, owner: str, device: str, prop: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM device_properties WHERE owner = ? AND device = ? AND property = ?",
        (owner, device, prop),
    )
    return cursor.rowcount > 0
