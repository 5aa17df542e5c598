"""The Store contract: what every implementation must do, as plain async tests.

A module per implementation (``test_store_sqlite.py``, later ``test_store_postgres.py``)
provides an open, empty ``store`` fixture and imports these tests with ``import *``.
Helpers are private (leading underscore) so that only the tests are exported.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from roost.errors import Conflict, InvalidInput, NotFound
from roost.store import AccessToken, Device, DeviceToken, RefreshToken, Store, User
from roost.store.base import DeviceProperty, Page

_T0 = 1_700_000_000_000  # ms


def _user(name: str = "alice", role: str = "user") -> User:
    return User(name=name, password_hash=f"$argon2id$hash-of-{name}", role=role, created=_T0)


def _device(owner: str = "alice", device: str = "dev1", **changes: object) -> Device:
    base = Device(
        owner=owner,
        device=device,
        name=f"{device} name",
        description="a thermometer",
        type="Generic",
        credentials_hash="$argon2id$creds",
        enabled=True,
        created=_T0,
        modified=_T0,
        last_connection=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _token(token_id: str = "tok1", **changes: object) -> DeviceToken:
    base = DeviceToken(
        id=token_id,
        owner="alice",
        device="dev1",
        name=f"token {token_id}",
        resources=("temperature", "led"),
        expires=None,
        created=_T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _access(token: str = "tok1", owner: str = "alice", **changes: object) -> AccessToken:
    base = AccessToken(
        owner=owner,
        token=token,
        name=f"token {token}",
        description="for the dashboard",
        enabled=True,
        allow={"Bucket": {"mqtt_bucket": ["ReadBucket"]}, "Device": {"*": ["Read*"]}},
        deny={"Device": {"dev2": ["*"]}},
        expire=None,
        created=_T0,
        modified=_T0,
        nonce=f"nonce-of-{token}",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _refresh(
    jti: str, family: str = "fam1", user: str = "alice", expires: int = _T0 + 1000
) -> RefreshToken:
    return RefreshToken(jti=jti, user=user, family=family, issued=_T0, expires=expires)


async def _with_device(store: Store, owner: str = "alice", device: str = "dev1") -> None:
    if await store.get_user(owner) is None:
        await store.create_user(_user(owner))
    await store.create_device(_device(owner, device))


# users


async def test_user_round_trips(store: Store) -> None:
    admin = _user("root", role="admin")
    await store.create_user(admin)
    got = await store.get_user("root")
    assert got == admin
    assert got is not None and got.is_admin


async def test_unknown_user_is_none(store: Store) -> None:
    assert await store.get_user("nobody") is None


async def test_duplicate_user_conflicts_and_keeps_the_first(store: Store) -> None:
    await store.create_user(_user("alice"))
    with pytest.raises(Conflict):
        await store.create_user(dataclasses.replace(_user("alice"), password_hash="other"))
    assert await store.get_user("alice") == _user("alice")


async def test_count_users(store: Store) -> None:
    assert await store.count_users() == 0
    for name in ("a", "b", "c"):
        await store.create_user(_user(name))
    assert await store.count_users() == 3


# devices


async def test_device_round_trips(store: Store) -> None:
    await store.create_user(_user("alice"))
    plain = _device(device="dev1")
    other = _device(device="dev2", credentials_hash=None, enabled=False, last_connection=_T0 + 5)
    await store.create_device(plain)
    await store.create_device(other)
    assert await store.get_device("alice", "dev1") == plain
    assert await store.get_device("alice", "dev2") == other


async def test_unknown_device_is_none(store: Store) -> None:
    await _with_device(store)
    assert await store.get_device("alice", "nope") is None
    assert await store.get_device("bob", "dev1") is None


async def test_duplicate_device_conflicts_but_other_owner_may_reuse_the_id(store: Store) -> None:
    await _with_device(store, "alice", "dev1")
    with pytest.raises(Conflict):
        await store.create_device(_device("alice", "dev1", name="again"))
    assert await store.get_device("alice", "dev1") == _device("alice", "dev1")
    await _with_device(store, "bob", "dev1")
    assert await store.get_device("bob", "dev1") == _device("bob", "dev1")


async def test_device_of_unknown_owner_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_device(_device("ghost", "dev1"))
    assert await store.list_devices("ghost") == []


async def test_list_devices_is_ordered_by_id_and_scoped_to_owner(store: Store) -> None:
    for owner in ("alice", "bob"):
        await store.create_user(_user(owner))
    for device in ("zeta", "alpha", "m10", "m2"):
        await store.create_device(_device("alice", device))
    await store.create_device(_device("bob", "beta"))
    listed = await store.list_devices("alice")
    assert [d.device for d in listed] == ["alpha", "m10", "m2", "zeta"]
    assert listed[0] == _device("alice", "alpha")
    assert [d.device for d in await store.list_devices("bob")] == ["beta"]
    assert await store.list_devices("carol") == []


async def test_lists_page_and_filter_by_id_or_name(store: Store) -> None:
    await store.create_user(_user("alice"))
    for device in ("a_1", "a_2", "ab", "b%", "c"):
        await store.create_device(_device("alice", device, name=f"Name {device.upper()}"))
    for i, token in enumerate(("t3", "t1", "t2")):
        await store.create_device_token(_token(token, device="a_1", created=_T0 + i // 2))
        await store.create_access_token(_access(token, name="Kept" if token == "t2" else token))

    async def devices(**page: Any) -> list[str]:
        return [d.device for d in await store.list_devices("alice", Page(**page))]

    assert await devices() == ["a_1", "a_2", "ab", "b%", "c"]
    assert await devices(count=2) == ["a_1", "a_2"]
    assert await devices(count=2, index=2) == ["ab", "b%"]
    assert await devices(index=4) == ["c"]
    assert await devices(index=5) == []
    assert await devices(name="_") == ["a_1", "a_2"]  # literal, as "%": not LIKE's wildcards
    assert await devices(name="%") == ["b%"]
    assert await devices(name="name a") == ["a_1", "a_2", "ab"]  # the name, in any case
    assert await devices(name="A", count=1, index=1) == ["a_2"]
    tokens = await store.list_device_tokens("alice", "a_1", Page(count=2, index=1))
    assert [t.id for t in tokens] == ["t3", "t2"]  # by creation, then id
    assert [t.id for t in await store.list_device_tokens("alice", "a_1", Page(name="T1"))] == ["t1"]
    access = await store.list_access_tokens("alice", Page(index=1, name="t"))
    assert [t.token for t in access] == ["t2", "t3"]  # "t2" by its id, named "Kept"


async def test_update_device_replaces_mutable_fields_only(store: Store) -> None:
    await _with_device(store)
    await store.set_last_connection("alice", "dev1", _T0 + 50)
    edited = _device(
        name="renamed",
        description="moved to the attic",
        type="HTTP",
        credentials_hash=None,
        enabled=False,
        modified=_T0 + 100,
        created=_T0 + 99,  # not mutable: ignored
        last_connection=None,  # owned by set_last_connection: ignored
    )
    await store.update_device(edited)
    expected = dataclasses.replace(edited, created=_T0, last_connection=_T0 + 50)
    assert await store.get_device("alice", "dev1") == expected


async def test_update_unknown_device_is_not_found(store: Store) -> None:
    await _with_device(store)
    with pytest.raises(NotFound):
        await store.update_device(_device("alice", "nope"))
    with pytest.raises(NotFound):
        await store.update_device(_device("bob", "dev1"))
    assert await store.get_device("alice", "nope") is None


async def test_delete_device(store: Store) -> None:
    await _with_device(store, "alice", "dev1")
    await _with_device(store, "alice", "dev2")
    assert await store.delete_device("alice", "dev1") is True
    assert await store.get_device("alice", "dev1") is None
    assert await store.delete_device("alice", "dev1") is False
    assert await store.delete_device("bob", "dev2") is False
    assert [d.device for d in await store.list_devices("alice")] == ["dev2"]


async def test_delete_device_deletes_its_tokens(store: Store) -> None:
    await _with_device(store, "alice", "dev1")
    await _with_device(store, "alice", "dev2")
    await store.create_device_token(_token("t1", device="dev1"))
    await store.create_device_token(_token("t2", device="dev1"))
    await store.create_device_token(_token("t3", device="dev2"))
    assert await store.delete_device("alice", "dev1")
    assert await store.get_device_token("t1") is None
    assert await store.get_device_token("t2") is None
    assert await store.list_device_tokens("alice", "dev1") == []
    assert await store.get_device_token("t3") == _token("t3", device="dev2")
    # the id is free again once the device is recreated
    await store.create_device(_device("alice", "dev1"))
    assert await store.list_device_tokens("alice", "dev1") == []
    await store.create_device_token(_token("t1", device="dev1"))


async def test_set_last_connection(store: Store) -> None:
    await _with_device(store)
    await store.set_last_connection("alice", "dev1", _T0 + 7)
    got = await store.get_device("alice", "dev1")
    assert got == _device(last_connection=_T0 + 7)
    await store.set_last_connection("alice", "dev1", _T0 + 8)
    got = await store.get_device("alice", "dev1")
    assert got is not None and got.last_connection == _T0 + 8


async def test_set_last_connection_of_unknown_device_is_ignored(store: Store) -> None:
    await _with_device(store)
    await store.set_last_connection("alice", "ghost", _T0)
    await store.set_last_connection("nobody", "dev1", _T0)
    assert await store.get_device("alice", "ghost") is None
    assert await store.get_device("alice", "dev1") == _device()


# device tokens


async def test_device_token_round_trips(store: Store) -> None:
    await _with_device(store)
    tokens = [
        _token("scoped"),
        _token("all", resources=None, expires=_T0 + 3_600_000),
        _token("none", resources=()),  # no resource at all, distinct from None (every resource)
        _token("odd", resources=("a/b", "ünïcode", 'qu"ote')),
    ]
    for token in tokens:
        await store.create_device_token(token)
    for token in tokens:
        assert await store.get_device_token(token.id) == token


async def test_unknown_device_token_is_none(store: Store) -> None:
    assert await store.get_device_token("nope") is None


async def test_duplicate_device_token_conflicts(store: Store) -> None:
    await _with_device(store)
    await store.create_device_token(_token("t1"))
    with pytest.raises(Conflict):
        await store.create_device_token(_token("t1", name="again"))
    assert await store.get_device_token("t1") == _token("t1")


async def test_device_token_of_unknown_device_is_not_found(store: Store) -> None:
    await _with_device(store)
    with pytest.raises(NotFound):
        await store.create_device_token(_token("t1", device="ghost"))
    assert await store.get_device_token("t1") is None


async def test_list_device_tokens_is_ordered_by_creation_and_scoped(store: Store) -> None:
    await _with_device(store, "alice", "dev1")
    await _with_device(store, "alice", "dev2")
    # insertion order, id order and creation order all differ
    await store.create_device_token(_token("a", created=_T0 + 3))
    await store.create_device_token(_token("c", created=_T0 + 2))
    await store.create_device_token(_token("b", created=_T0 + 1))
    await store.create_device_token(_token("x", device="dev2", created=_T0))
    listed = await store.list_device_tokens("alice", "dev1")
    assert [t.id for t in listed] == ["b", "c", "a"]
    assert listed[0] == _token("b", created=_T0 + 1)
    assert [t.id for t in await store.list_device_tokens("alice", "dev2")] == ["x"]
    assert await store.list_device_tokens("bob", "dev1") == []


async def test_delete_device_token(store: Store) -> None:
    await _with_device(store, "alice", "dev1")
    await _with_device(store, "alice", "dev2")
    await store.create_device_token(_token("t1"))
    await store.create_device_token(_token("t2"))
    # the token must belong to the named device
    assert await store.delete_device_token("alice", "dev2", "t1") is False
    assert await store.delete_device_token("bob", "dev1", "t1") is False
    assert await store.get_device_token("t1") == _token("t1")
    assert await store.delete_device_token("alice", "dev1", "t1") is True
    assert await store.get_device_token("t1") is None
    assert await store.delete_device_token("alice", "dev1", "t1") is False
    assert [t.id for t in await store.list_device_tokens("alice", "dev1")] == ["t2"]


# refresh tokens


async def test_refresh_token_is_used_once(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1"))
    assert await store.use_refresh_token("r1", _T0 + 1) == _refresh("r1")
    assert await store.use_refresh_token("r1", _T0 + 2) is None


async def test_rotation_keeps_the_family_alive(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1"))
    assert await store.use_refresh_token("r1", _T0) is not None
    await store.add_refresh_token(_refresh("r2"))
    assert await store.use_refresh_token("r2", _T0) == _refresh("r2")
    await store.add_refresh_token(_refresh("r3"))
    assert await store.use_refresh_token("r3", _T0) == _refresh("r3")


async def test_reuse_revokes_the_whole_family(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1", family="fam1"))
    await store.add_refresh_token(_refresh("other", family="fam2"))
    assert await store.use_refresh_token("r1", _T0) is not None
    await store.add_refresh_token(_refresh("r2", family="fam1"))  # the rotated successor
    assert await store.use_refresh_token("r1", _T0) is None  # replay of a used token
    assert await store.use_refresh_token("r2", _T0) is None  # its newer sibling died with it
    assert await store.use_refresh_token("other", _T0) == _refresh("other", family="fam2")


async def test_token_added_to_a_revoked_family_is_dead(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1"))
    assert await store.use_refresh_token("r1", _T0) is not None
    assert await store.use_refresh_token("r1", _T0) is None  # reuse: family revoked
    await store.add_refresh_token(_refresh("r2"))  # a rotation that raced the reuse
    assert await store.use_refresh_token("r2", _T0) is None


async def test_expired_refresh_token_is_refused(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1", expires=_T0 + 1000))
    await store.add_refresh_token(_refresh("r2", family="fam2", expires=_T0 + 1000))
    assert await store.use_refresh_token("r1", _T0 + 1000) is None  # expiry is exclusive
    assert await store.use_refresh_token("r1", _T0 + 5000) is None
    live = await store.use_refresh_token("r2", _T0 + 999)
    assert live == _refresh("r2", family="fam2", expires=_T0 + 1000)


async def test_purge_forgets_expired_refresh_tokens_only(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("old", expires=_T0 + 1000))
    assert await store.use_refresh_token("old", _T0) is not None  # used, then rotated
    await store.add_refresh_token(_refresh("new", expires=_T0 + 5000))
    await store.add_refresh_token(_refresh("gone", family="fam2", expires=_T0 + 2000))
    assert await store.purge_refresh_tokens(_T0 + 2000) == 2  # expiry is inclusive here too
    assert await store.purge_refresh_tokens(_T0 + 2000) == 0
    assert await store.use_refresh_token("new", _T0 + 2500) == _refresh("new", expires=_T0 + 5000)
    assert await store.use_refresh_token("gone", _T0) is None  # forgotten


async def test_purge_keeps_a_revoked_family_revoked(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1", expires=_T0 + 1000))
    await store.add_refresh_token(_refresh("r2", expires=_T0 + 5000))
    assert await store.use_refresh_token("r1", _T0) is not None
    assert await store.use_refresh_token("r1", _T0) is None  # reuse: family revoked
    assert await store.purge_refresh_tokens(_T0 + 1000) == 1  # r1, the reused one, is gone
    await store.add_refresh_token(_refresh("r3", expires=_T0 + 6000))  # raced the reuse
    assert await store.use_refresh_token("r2", _T0 + 1500) is None
    assert await store.use_refresh_token("r3", _T0 + 1500) is None


_GRACE = 60_000
_LATER = _T0 + 10_000_000  # the tokens of the retry tests expire long after


def _rotated(jti: str, parent: str | None) -> RefreshToken:
    return RefreshToken(jti, "alice", "fam1", _T0, _LATER, parent=parent)


async def test_a_lost_answer_can_be_retried_within_the_grace(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_rotated("r1", None))
    assert await store.use_refresh_token("r1", _T0, _GRACE) == _rotated("r1", None)
    await store.add_refresh_token(_rotated("lost", "r1"))  # its answer never arrives
    # the client retries with the token it still holds
    assert await store.use_refresh_token("r1", _T0 + _GRACE - 1, _GRACE) == _rotated("r1", None)
    await store.add_refresh_token(_rotated("r2", "r1"))
    assert await store.use_refresh_token("r2", _T0 + _GRACE) == _rotated("r2", "r1")  # alive
    await store.add_refresh_token(_rotated("r3", "r2"))
    # the successor it replaced was retired: presenting it is a reuse
    assert await store.use_refresh_token("lost", _T0 + _GRACE, _GRACE) is None
    assert await store.use_refresh_token("r3", _T0 + _GRACE) is None


async def test_a_used_token_is_retried_once_then_it_is_a_replay(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_rotated("r1", None))
    assert await store.use_refresh_token("r1", _T0, _GRACE) is not None
    await store.add_refresh_token(_rotated("lost", "r1"))
    assert await store.use_refresh_token("r1", _T0 + 1, _GRACE) is not None  # the retry
    await store.add_refresh_token(_rotated("r2", "r1"))  # not used yet, and still in the grace
    assert await store.use_refresh_token("r1", _T0 + 2, _GRACE) is None  # again: a replay
    assert await store.use_refresh_token("r2", _T0 + 3, _GRACE) is None  # the family is revoked
    assert await store.use_refresh_token("r1", _T0 + 4, _GRACE) is None


async def test_a_retry_after_the_grace_revokes_the_family(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_rotated("r1", None))
    assert await store.use_refresh_token("r1", _T0, _GRACE) is not None
    await store.add_refresh_token(_rotated("r2", "r1"))
    assert await store.use_refresh_token("r1", _T0 + _GRACE, _GRACE) is None
    assert await store.use_refresh_token("r2", _T0 + _GRACE, _GRACE) is None


async def test_a_replay_after_the_successor_was_used_revokes_the_family(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_rotated("r1", None))
    assert await store.use_refresh_token("r1", _T0, _GRACE) is not None
    await store.add_refresh_token(_rotated("r2", "r1"))
    assert await store.use_refresh_token("r2", _T0 + 1, _GRACE) is not None  # delivered, used
    await store.add_refresh_token(_rotated("r3", "r2"))
    assert await store.use_refresh_token("r1", _T0 + 2, _GRACE) is None  # so r1 is a replay
    assert await store.use_refresh_token("r3", _T0 + 3, _GRACE) is None


async def test_no_grace_means_no_retry(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_rotated("r1", None))
    assert await store.use_refresh_token("r1", _T0) is not None
    await store.add_refresh_token(_rotated("r2", "r1"))
    assert await store.use_refresh_token("r1", _T0) is None
    assert await store.use_refresh_token("r2", _T0) is None


async def test_unknown_refresh_token_is_none(store: Store) -> None:
    assert await store.use_refresh_token("nope", _T0) is None


async def test_duplicate_refresh_token_conflicts(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1"))
    with pytest.raises(Conflict):
        await store.add_refresh_token(_refresh("r1", family="fam2"))


async def test_refresh_token_of_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.add_refresh_token(_refresh("r1", user="ghost"))
    assert await store.use_refresh_token("r1", _T0) is None


async def test_revoke_refresh_tokens_counts_live_ones(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(_user(name))
    for jti, family in [("a1", "f1"), ("a2", "f1"), ("a3", "f2"), ("a4", "f3")]:
        await store.add_refresh_token(_refresh(jti, family=family))
    await store.add_refresh_token(_refresh("b1", family="fb", user="bob"))
    assert await store.use_refresh_token("a4", _T0) is not None  # used: no longer live
    assert await store.revoke_refresh_tokens("alice") == 3
    for jti in ("a1", "a2", "a3", "a4"):
        assert await store.use_refresh_token(jti, _T0) is None
    assert await store.revoke_refresh_tokens("alice") == 0
    assert await store.revoke_refresh_tokens("nobody") == 0
    # the families stay dead: a token rotated from one of them afterwards is refused
    await store.add_refresh_token(_refresh("a5", family="f3"))
    assert await store.use_refresh_token("a5", _T0) is None
    assert await store.use_refresh_token("b1", _T0) == _refresh("b1", family="fb", user="bob")


async def test_revoke_refresh_family_ends_one_login_only(store: Store) -> None:
    await store.create_user(_user("alice"))
    for jti, family in [("a1", "f1"), ("a2", "f1"), ("a3", "f2")]:
        await store.add_refresh_token(_refresh(jti, family=family))
    assert await store.use_refresh_token("a1", _T0) is not None  # used: no longer live
    assert await store.revoke_refresh_family("a1") == 1  # a2, rotated from a1, was live
    assert await store.use_refresh_token("a2", _T0) is None
    await store.add_refresh_token(_refresh("a4", family="f1"))  # rotated from a dead family
    assert await store.use_refresh_token("a4", _T0) is None
    assert await store.use_refresh_token("a3", _T0) == _refresh("a3", family="f2")
    assert await store.revoke_refresh_family("nothing") == 0


# users: listing, role, enabled


async def test_list_users_by_name_and_page(store: Store) -> None:
    for name in ("carol", "alice", "bob"):
        await store.create_user(_user(name))
    assert [u.name for u in await store.list_users()] == ["alice", "bob", "carol"]
    assert [u.name for u in await store.list_users(Page(count=1, index=1))] == ["bob"]
    assert [u.name for u in await store.list_users(Page(name="AR"))] == ["carol"]
    assert all(u.enabled for u in await store.list_users())


async def test_update_user_sets_role_and_enabled(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("a1"))
    admin = await store.update_user("alice", role="admin")
    assert admin == dataclasses.replace(_user("alice"), role="admin")
    assert await store.use_refresh_token("a1", _T0) is not None  # a role change logs nobody out
    await store.add_refresh_token(_refresh("a2", family="f2"))
    disabled = await store.update_user("alice", enabled=False)
    assert disabled == dataclasses.replace(_user("alice"), role="admin", enabled=False)
    assert await store.get_user("alice") == disabled
    assert await store.use_refresh_token("a2", _T0) is None  # disabling revokes the logins
    assert (await store.update_user("alice", enabled=True)).enabled


async def test_update_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.update_user("ghost", enabled=False)


# users: passwords


async def test_set_password_replaces_the_hash_and_revokes_refresh_tokens(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(_user(name))
    await store.add_refresh_token(_refresh("a1", family="f1"))
    await store.add_refresh_token(_refresh("a2", family="f2"))
    await store.add_refresh_token(_refresh("b1", family="fb", user="bob"))
    assert await store.use_refresh_token("a2", _T0) is not None  # used: no longer live
    assert await store.set_password("alice", "$argon2id$new") == 1
    assert await store.get_user("alice") == dataclasses.replace(
        _user("alice"), password_hash="$argon2id$new"
    )
    assert await store.use_refresh_token("a1", _T0) is None
    await store.add_refresh_token(_refresh("a3", family="f1"))  # rotated from a dead family
    assert await store.use_refresh_token("a3", _T0) is None
    assert await store.use_refresh_token("b1", _T0) == _refresh("b1", family="fb", user="bob")
    assert await store.get_user("bob") == _user("bob")


async def test_set_password_of_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.set_password("ghost", "$argon2id$new")
    assert await store.get_user("ghost") is None


# user access tokens


async def test_access_token_round_trips(store: Store) -> None:
    await store.create_user(_user("alice"))
    tokens = [
        _access("plain"),
        _access("bare", allow={}, deny={}, enabled=False, expire=_T0 + 3_600_000),
        _access(
            "odd",
            name="ünïcode 'quoted\"",
            allow={"*": {"*": ["*", {"filter": ["a", "b"]}, {"x": "y"}]}},
        ),
    ]
    for token in tokens:
        await store.create_access_token(token)
    for token in tokens:
        assert await store.get_access_token("alice", token.token) == token


async def test_access_tokens_are_scoped_to_their_owner(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(_user(name))
    await store.create_access_token(_access("same"))
    await store.create_access_token(_access("same", owner="bob", name="bob's"))
    assert await store.get_access_token("alice", "same") == _access("same")
    assert await store.get_access_token("bob", "same") == _access("same", "bob", name="bob's")
    assert await store.get_access_token("carol", "same") is None
    assert await store.get_access_token("alice", "nope") is None


async def test_duplicate_access_token_conflicts_and_keeps_the_first(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.create_access_token(_access("t1"))
    with pytest.raises(Conflict):
        await store.create_access_token(_access("t1", name="again"))
    assert await store.get_access_token("alice", "t1") == _access("t1")


async def test_access_token_of_unknown_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.create_access_token(_access("t1", owner="ghost"))
    assert await store.list_access_tokens("ghost") == []


async def test_list_access_tokens_is_ordered_by_id_and_scoped(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(_user(name))
    for token, created in (("zeta", 1), ("alpha", 3), ("m10", 2), ("m2", 0)):
        await store.create_access_token(_access(token, created=_T0 + created))
    await store.create_access_token(_access("beta", owner="bob"))
    listed = await store.list_access_tokens("alice")
    assert [t.token for t in listed] == ["alpha", "m10", "m2", "zeta"]
    assert listed[0] == _access("alpha", created=_T0 + 3)
    assert [t.token for t in await store.list_access_tokens("bob")] == ["beta"]


async def test_update_access_token_replaces_mutable_fields_only(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.create_access_token(_access("t1"))
    edited = _access(
        "t1",
        name="renamed",
        description="",
        enabled=False,
        allow={"*": {"*": ["*"]}},
        deny={},
        expire=_T0 + 5,
        modified=_T0 + 100,
        created=_T0 + 99,  # not mutable: ignored
    )
    await store.update_access_token(edited)
    assert await store.get_access_token("alice", "t1") == dataclasses.replace(edited, created=_T0)
    await store.update_access_token(dataclasses.replace(edited, expire=None))
    got = await store.get_access_token("alice", "t1")
    assert got is not None and got.expire is None


async def test_access_token_nonce_is_kept_and_never_updated(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.create_access_token(_access("t1", nonce="first"))
    await store.update_access_token(_access("t1", nonce="second", name="renamed"))
    got = await store.get_access_token("alice", "t1")
    assert got is not None and got.name == "renamed" and got.nonce == "first"
    assert await store.delete_access_token("alice", "t1")
    await store.create_access_token(_access("t1", nonce="third"))
    got = await store.get_access_token("alice", "t1")
    assert got is not None and got.nonce == "third"


def test_each_new_access_token_record_draws_its_own_nonce() -> None:
    fields: tuple[Any, ...] = ("alice", "t1", "t1", "", True, {}, {}, None, _T0, _T0)
    first, second = AccessToken(*fields), AccessToken(*fields)
    assert first.nonce and second.nonce and first.nonce != second.nonce
    assert dataclasses.replace(first, name="renamed").nonce == first.nonce


async def test_update_unknown_access_token_is_not_found(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.create_access_token(_access("t1"))
    with pytest.raises(NotFound):
        await store.update_access_token(_access("nope"))
    with pytest.raises(NotFound):
        await store.update_access_token(_access("t1", owner="bob"))
    assert await store.get_access_token("alice", "nope") is None


async def test_delete_access_token(store: Store) -> None:
    for name in ("alice", "bob"):
        await store.create_user(_user(name))
    await store.create_access_token(_access("t1"))
    await store.create_access_token(_access("t2"))
    assert await store.delete_access_token("bob", "t1") is False
    assert await store.delete_access_token("alice", "t1") is True
    assert await store.get_access_token("alice", "t1") is None
    assert await store.delete_access_token("alice", "t1") is False
    assert [t.token for t in await store.list_access_tokens("alice")] == ["t2"]


# values no store can hold


async def test_values_out_of_range_are_invalid_input(store: Store) -> None:
    await _with_device(store)
    with pytest.raises(InvalidInput):
        await store.create_device_token(_token("t1", expires=2**70))
    with pytest.raises(InvalidInput):
        await store.create_device(_device("alice", "dev2", name="lone \ud800 surrogate"))
    with pytest.raises(InvalidInput):
        await store.create_access_token(_access("t1", expire=-(2**64)))
    assert await store.get_device_token("t1") is None
    assert await store.get_device("alice", "dev2") is None
    assert await store.list_access_tokens("alice") == []
    await store.create_device_token(_token("t1"))  # the store still works


# concurrency


async def test_many_concurrent_writes_all_land(store: Store) -> None:
    await store.create_user(_user("alice"))
    ids = [f"dev{i:03d}" for i in range(200)]
    await asyncio.gather(*(store.create_device(_device("alice", d)) for d in ids))
    assert [d.device for d in await store.list_devices("alice")] == ids


async def test_concurrent_duplicates_conflict_exactly_once_each(store: Store) -> None:
    await store.create_user(_user("alice"))
    results = await asyncio.gather(
        *(store.create_device(_device("alice", f"dev{i % 10}")) for i in range(50)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    assert len(await store.list_devices("alice")) == 10


async def test_concurrent_uses_of_one_refresh_token_let_one_through(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.add_refresh_token(_refresh("r1"))
    results = await asyncio.gather(*(store.use_refresh_token("r1", _T0) for _ in range(20)))
    assert results.count(_refresh("r1")) == 1
    assert results.count(None) == 19


async def test_partial_updates_of_different_fields_both_land(store: Store) -> None:
    await store.create_user(_user("alice"))
    await store.create_device(_device("alice", "dev1"))
    first = await store.get_device("alice", "dev1")
    assert first is not None
    # two edits made from the same read: one renames, the other rotates the credentials
    await store.update_device(dataclasses.replace(first, name="renamed", modified=2), ["name"])
    await store.update_device(
        dataclasses.replace(first, credentials_hash="new-hash", modified=3), ["credentials_hash"]
    )
    stored = await store.get_device("alice", "dev1")
    assert stored is not None
    assert (stored.name, stored.credentials_hash, stored.modified) == ("renamed", "new-hash", 3)
    assert stored.description == first.description


# device properties


def _property(prop: str = "cfg", device: str = "dev1", **changes: object) -> DeviceProperty:
    base = DeviceProperty(
        owner="alice",
        device=device,
        property=prop,
        name=f"{prop} name",
        description="",
        type="",
        value={"rate": 5, "tags": ["a", None], "big": 2**64 - 1, "f": 1.5},
        created=_T0,
        modified=_T0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_device_property_round_trips(store: Store) -> None:
    await _with_device(store)
    await store.create_device_property(_property("b"), 10)
    await store.create_device_property(_property("a", value=None, type="configuration"), 10)
    assert await store.get_device_property("alice", "dev1", "b") == _property("b")
    listed = await store.list_device_properties("alice", "dev1")
    assert listed == [_property("a", value=None, type="configuration"), _property("b")]
    assert await store.get_device_property("alice", "dev1", "c") is None
    assert await store.get_device_property("alice", "dev2", "b") is None


async def test_device_property_conflicts_limits_and_missing_device(store: Store) -> None:
    await _with_device(store)
    await store.create_device_property(_property("a"), 2)
    with pytest.raises(Conflict):
        await store.create_device_property(_property("a", value=1), 2)
    await store.create_device_property(_property("b"), 2)
    with pytest.raises(Conflict):
        await store.create_device_property(_property("c"), 2)
    with pytest.raises(Conflict):
        await store.set_device_property_value("alice", "dev1", "c", 1, _T0, 2)
    await store.set_device_property_value("alice", "dev1", "a", 3, _T0 + 1, 2)  # no new row
    with pytest.raises(NotFound):
        await store.create_device_property(_property("a", device="ghost"), 2)
    with pytest.raises(NotFound):
        await store.set_device_property_value("alice", "ghost", "a", 1, _T0, 2)
    assert [p.property for p in await store.list_device_properties("alice", "dev1")] == ["a", "b"]


async def test_update_and_set_device_property(store: Store) -> None:
    await _with_device(store)
    await store.create_device_property(_property("a"), 10)
    changed = _property("a", name="n", value=[1], type="configuration", modified=_T0 + 5)
    await store.update_device_property(dataclasses.replace(changed, created=0))
    assert await store.get_device_property("alice", "dev1", "a") == changed  # created kept
    with pytest.raises(NotFound):
        await store.update_device_property(_property("missing"))
    await store.set_device_property_value("alice", "dev1", "a", "v", _T0 + 6, 10)
    got = await store.get_device_property("alice", "dev1", "a")
    assert got == dataclasses.replace(changed, value="v", modified=_T0 + 6)
    await store.set_device_property_value("alice", "dev1", "new", {"x": 1}, _T0 + 7, 10)
    new = await store.get_device_property("alice", "dev1", "new")
    assert new == DeviceProperty("alice", "dev1", "new", "", "", "", {"x": 1}, _T0 + 7, _T0 + 7)


async def test_delete_device_property_and_device(store: Store) -> None:
    await _with_device(store)
    await store.create_device_property(_property("a"), 10)
    await store.create_device_property(_property("b"), 10)
    assert await store.delete_device_property("alice", "dev1", "a") is True
    assert await store.delete_device_property("alice", "dev1", "a") is False
    assert await store.delete_device("alice", "dev1")
    await _with_device(store)
    assert await store.list_device_properties("alice", "dev1") == []
