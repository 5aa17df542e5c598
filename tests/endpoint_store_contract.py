"""The Store contract for endpoints, as plain async tests.

A module per implementation provides an open, empty ``store`` fixture and imports these tests
with ``import *`` (``test_store_sqlite_endpoints.py``).
"""

from __future__ import annotations

import dataclasses

import pytest

from roost.errors import Conflict, InvalidInput, NotFound
from roost.store import Store, User
from roost.store.base import Endpoint, Page

_T0 = 1_700_000_000_000  # ms
_HTTP = {
    "method": "POST",
    "url": "https://api.example.com/sensor?x={{x}}",
    "headers": [{"key": "Authorization", "value": "Bearer xyz"}],
    "body": "",
    "body_type": "json",
}


def _endpoint(endpoint: str = "hook", owner: str = "alice", **changes: object) -> Endpoint:
    base = Endpoint(
        owner=owner,
        endpoint=endpoint,
        name=f"{endpoint} name",
        description="tells the kitchen",
        enabled=True,
        type="http_request",
        config=_HTTP,
        created=_T0,
        modified=_T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def _with_endpoint(store: Store, endpoint: str = "hook", owner: str = "alice") -> Endpoint:
    if await store.get_user(owner) is None:
        await store.create_user(User(owner, "$argon2id$h", "user", _T0))
    record = _endpoint(endpoint, owner)
    await store.create_endpoint(record)
    return record


async def test_endpoint_round_trips(store: Store) -> None:
    made = await _with_endpoint(store)
    assert await store.get_endpoint("alice", "hook") == made
    assert await store.get_endpoint("alice", "other") is None
    assert await store.get_endpoint("bob", "hook") is None


async def test_endpoint_of_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_endpoint(_endpoint(owner="nobody"))


async def test_duplicate_endpoint_conflicts_and_keeps_the_first(store: Store) -> None:
    first = await _with_endpoint(store)
    with pytest.raises(Conflict):
        await store.create_endpoint(_endpoint(name="second"))
    assert await store.get_endpoint("alice", "hook") == first


async def test_list_endpoints_is_ordered_by_id_and_scoped(store: Store) -> None:
    for endpoint in ("b", "c", "a"):
        await _with_endpoint(store, endpoint)
    await _with_endpoint(store, "z", owner="bob")
    assert [e.endpoint for e in await store.list_endpoints("alice")] == ["a", "b", "c"]
    assert [e.endpoint for e in await store.list_endpoints("bob")] == ["z"]


async def test_list_endpoints_pages_and_filters_by_id_or_name(store: Store) -> None:
    for endpoint in ("a1", "b2", "c3", "d4"):
        await _with_endpoint(store, endpoint)
    await store.update_endpoint(_endpoint("d4", name="Kitchen", modified=_T0 + 1))
    two = await store.list_endpoints("alice", Page(count=2, index=1))
    assert [e.endpoint for e in two] == ["b2", "c3"]
    assert [e.endpoint for e in await store.list_endpoints("alice", Page(name="KITCH"))] == ["d4"]
    assert [e.endpoint for e in await store.list_endpoints("alice", Page(name="b"))] == ["b2"]


async def test_update_endpoint_replaces_mutable_fields_only(store: Store) -> None:
    await _with_endpoint(store)
    changed = _endpoint(
        name="new",
        description="",
        enabled=False,
        type="email",
        config={"recipient": "a@example.com", "subject": "{{t}}", "body": "é ✓"},
        created=_T0 + 5,  # not changed by an update
        modified=_T0 + 9,
    )
    await store.update_endpoint(changed)
    assert await store.get_endpoint("alice", "hook") == dataclasses.replace(changed, created=_T0)
    with pytest.raises(NotFound):
        await store.update_endpoint(_endpoint("absent"))


async def test_delete_endpoint(store: Store) -> None:
    await _with_endpoint(store)
    assert await store.delete_endpoint("alice", "hook")
    assert not await store.delete_endpoint("alice", "hook")
    assert await store.get_endpoint("alice", "hook") is None


async def test_a_config_that_cannot_be_stored_is_invalid_input(store: Store) -> None:
    await _with_endpoint(store)
    with pytest.raises((InvalidInput, ValueError)):
        await store.create_endpoint(_endpoint("nan", config={"x": float("nan")}))
    assert await store.get_endpoint("alice", "nan") is None
