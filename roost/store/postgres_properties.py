"""The statements of the PostgreSQL store for device properties.

A creation checks the device's count of properties against the limit while it holds the device's
row (``FOR UPDATE``): two nodes creating properties of one device at once cannot both pass the
limit.
"""

from __future__ import annotations

import json
from typing import Any

from roost.errors import Conflict, NotFound
from roost.store.base import DeviceProperty
from roost.store.postgres_queries import Conn, insert, select
from roost.store.postgres_sql import constraints, count, text

_COLUMNS = (
    *("owner", "device", "property", "name", "description", "type", "value"),
    *("created", "modified"),
)
_SELECT = select("device_properties", _COLUMNS)


def _from(row: Any) -> DeviceProperty:
    owner, device, prop, name, description, type_, value, created, modified = row
    return DeviceProperty(
        owner, device, prop, name, description, type_, json.loads(value), created, modified
    )


async def _check_room(conn: Conn, owner: str, device: str, limit: int) -> None:
    """Locks the device's row; NotFound without it, Conflict at ``limit`` properties."""
    found = await conn.fetchval(
        "SELECT 1 FROM devices WHERE owner = $1 AND device = $2 FOR UPDATE", owner, device
    )
    if found is None:
        raise NotFound(f"device {device!r} of {owner!r} does not exist")
    held = await conn.fetchval(
        "SELECT COUNT(*) FROM device_properties WHERE owner = $1 AND device = $2", owner, device
    )
    if held >= limit:
        raise Conflict(f"device {device!r} holds {limit} properties already")


async def select_properties(conn: Conn, owner: str, device: str) -> list[DeviceProperty]:
    sql = _SELECT + " WHERE owner = $1 AND device = $2 ORDER BY property"
    return [_from(row) for row in await conn.fetch(sql, owner, device)]


async def select_property(conn: Conn, owner: str, device: str, prop: str) -> DeviceProperty | None:
    sql = _SELECT + " WHERE owner = $1 AND device = $2 AND property = $3"
    row = await conn.fetchrow(sql, owner, device, prop)
    return None if row is None else _from(row)


async def insert_property(conn: Conn, prop: DeviceProperty, limit: int) -> None:
    values = [text(prop.value) if c == "value" else getattr(prop, c) for c in _COLUMNS]
    async with conn.transaction():
        await _check_room(conn, prop.owner, prop.device, limit)
        with constraints(f"property {prop.property!r}"):
            await conn.execute(insert("device_properties", _COLUMNS), *values)


async def update_property(conn: Conn, prop: DeviceProperty) -> None:
    status = await conn.execute(
        "UPDATE device_properties SET name = $4, description = $5, type = $6, value = $7,"
        " modified = $8 WHERE owner = $1 AND device = $2 AND property = $3",
        *(prop.owner, prop.device, prop.property, prop.name, prop.description, prop.type),
        text(prop.value),
        prop.modified,
    )
    if count(status) == 0:
        raise NotFound(f"property {prop.property!r} of device {prop.device!r} does not exist")


_SET_VALUE = (
    "UPDATE device_properties SET value = $4, modified = $5"
    " WHERE owner = $1 AND device = $2 AND property = $3"
)


async def set_property_value(
    conn: Conn, owner: str, device: str, prop: str, value: Any, now: int, limit: int
) -> None:
    params = (owner, device, prop, text(value), now)
    if count(await conn.execute(_SET_VALUE, *params)):
        return
    async with conn.transaction():
        await _check_room(conn, owner, device, limit)  # the device locked: no creation races
        if count(await conn.execute(_SET_VALUE, *params)) == 0:  # still absent: create it
            await conn.execute(
                "INSERT INTO device_properties (owner, device, property, name, description,"
                " type, value, created, modified) VALUES ($1, $2, $3, '', '', '', $4, $5, $5)",
                *params,
            )


async def delete_property(conn: Conn, owner: str, device: str, prop: str) -> bool:
    status = await conn.execute(
        "DELETE FROM device_properties WHERE owner = $1 AND device = $2 AND property = $3",
        owner,
        device,
        prop,
    )
    return count(status) > 0
