"""The storage interface: what Roost keeps, as records, behind a small typed Protocol.

Every implementation (``sqlite.py`` today, ``postgres.py`` for scale-out) passes the same contract
suite in ``tests/store_contract.py``. Timestamps are integer milliseconds since the epoch. Secrets
arrive here already hashed; the store never sees a password or a device credential in clear.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from roost.store.aggregate import AggregateQuery, AggregateRow


class StoreCounts:
    """What a store counts for the metrics (roost.metrics): points written to buckets, and the
    operations that failed by their name (not the domain errors they are documented to raise).
    Plain counters, changed on the event loop's thread."""

    __slots__ = ("failures", "points_written")

    def __init__(self) -> None:
        self.points_written = 0
        self.failures: Counter[str] = Counter()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    role: str  # "admin" or "user"
    created: int
    enabled: bool = True  # a disabled user cannot log in

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class Device:
    owner: str
    device: str
    name: str
    description: str
    type: str  # "Generic", "HTTP", "MQTT", "Virtual"
    credentials_hash: str | None
    enabled: bool
    created: int
    modified: int
    last_connection: int | None  # ms of the last connect or disconnect, None if never seen


@dataclass(frozen=True, slots=True)
class DeviceToken:
    """A device token's claims; the JWT itself is re-signed from these when listed."""

    id: str  # the JWT's jti
    owner: str
    device: str
    name: str
    resources: tuple[str, ...] | None  # None: every resource of the device
    expires: int | None  # ms, None: never
    created: int  # ms; the JWT's iat is created // 1000


@dataclass(frozen=True, slots=True)
class Page:
    """Which part of a list to read (thinger-api.md 2.20, the list conventions): the items whose
    id or name contains ``name`` (ASCII letters in any case; None: every item), in the list's
    order, from the ``index``-th (0: the first) on, at most ``count`` of them (None: all)."""

    count: int | None = None
    index: int = 0
    name: str | None = None


EVERY = Page()


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A user-defined access token (thinger-api.md 2.13): its id, permissions and state. The JWT
    (claims ``usr``, ``jti`` = ``token``, ``svr``, ``nonce``, ``exp`` when ``expire`` is set) is
    signed from these; the store holds no secret for it.

    ``nonce`` tells this token from an earlier one of the same id: each new record draws a fresh
    one (``dataclasses.replace`` keeps it), so a JWT of a deleted token does not come back to life
    when a token of that id is created again. Tokens stored before nonces existed have ``""``,
    and their JWTs no ``nonce`` claim."""

    owner: str
    token: str  # the id, unique per owner; the JWT's jti
    name: str
    description: str
    enabled: bool
    allow: dict[str, Any]  # permission grammar, as JSON (roost.auth.permissions)
    deny: dict[str, Any]
    expire: int | None  # ms, None: never
    created: int
    modified: int
    nonce: str = field(default_factory=new_nonce)  # never changes; "" for pre-nonce tokens


@dataclass(frozen=True, slots=True)
class RefreshToken:
    jti: str
    user: str
    family: str  # every token rotated from one login shares the family of the first
    issued: int
    expires: int
    parent: str | None = None  # the token this one was rotated from; None: a login's first


@dataclass(frozen=True, slots=True)
class DeviceProperty:
    """A property of a device (thinger-api.md 2.8): a JSON value kept by the server, which the
    REST API and the device itself read and write."""

    owner: str
    device: str
    property: str  # the id, unique per device
    name: str
    description: str
    type: str  # "" or "configuration"
    value: Any  # any JSON value
    created: int
    modified: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """A data bucket (thinger-api.md 2.10): a named time series of JSON values, and where its
    points come from (``config``: ``{"source": "write"|"api"|"device", ...}``)."""

    owner: str
    bucket: str  # the id, unique per owner
    name: str
    description: str
    enabled: bool  # a disabled bucket takes no writes
    config: dict[str, Any]
    retention: dict[str, Any] | None  # {"period": n, "unit": "hours"...}; None: keep every point
    created: int
    modified: int


@dataclass(frozen=True, slots=True)
class BucketPoint:
    ts: int  # ms since the epoch, unique per bucket
    value: Any  # any JSON value


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint (thinger-api.md 2.11): an outgoing call the user defines (an HTTP request, an
    email, ...) that the API and the user's devices trigger with data."""

    owner: str
    endpoint: str  # the id, unique per owner
    name: str
    description: str
    enabled: bool  # a disabled endpoint is not called
    type: str  # "http_request", "email", ...
    config: dict[str, Any]  # the type's settings, as JSON
    created: int
    modified: int


class Store(Protocol):
    """Async storage. Methods raise roost.errors.Conflict / NotFound as documented, and
    InvalidInput for a value the store cannot hold (an integer beyond 64 bits, text that is not
    valid Unicode); nothing else on expected conditions."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def changed_elsewhere(self) -> None:
        """Another node changed the shared database (a revocation or a bucket change was
        announced on the bus): drop whatever records this store keeps in memory, so the next
        read sees the change."""

    # users
    async def create_user(self, user: User) -> None:
        """Raises Conflict if the name is taken."""

    async def get_user(self, name: str) -> User | None: ...

    async def count_users(self) -> int: ...

    async def list_users(self, page: Page = EVERY) -> list[User]:
        """Ordered by name; ``page`` of them (``page.name`` matches the name)."""

    async def update_user(
        self, name: str, role: str | None = None, enabled: bool | None = None
    ) -> User:
        """Sets the role and/or enabled flag (None: unchanged) and returns the user as stored.
        Disabling revokes every refresh token of the user in the same transaction, as
        :meth:`revoke_refresh_tokens` does. Raises NotFound if there is no such user."""

    async def set_password(self, name: str, password_hash: str) -> int:
        """Replaces the user's password hash and, in the same transaction, revokes every refresh
        token of the user as :meth:`revoke_refresh_tokens` does (returning the same count);
        raises NotFound if there is no such user."""

    # devices
    async def create_device(self, device: Device) -> None:
        """Raises Conflict if (owner, device) exists, NotFound if the owner is not a user."""

    async def get_device(self, owner: str, device: str) -> Device | None: ...

    async def list_devices(self, owner: str, page: Page = EVERY) -> list[Device]:
        """Ordered by device id; ``page`` of them."""

    async def update_device(self, device: Device, fields: Collection[str] | None = None) -> None:
        """Replaces the mutable fields of an existing device (name, description, type,
        credentials_hash, enabled; not created nor last_connection), or only ``fields`` of them
        when given (so concurrent edits of different fields both land); ``modified`` always.
        Raises NotFound if absent."""

    async def delete_device(self, owner: str, device: str) -> bool:
        """Deletes the device and its tokens; False if it did not exist."""

    async def set_last_connection(self, owner: str, device: str, ts: int) -> None:
        """Records a connect/disconnect time; a missing device is ignored."""

    # device tokens
    async def create_device_token(self, token: DeviceToken) -> None:
        """Raises Conflict if the id exists, NotFound if the device does not."""

    async def list_device_tokens(
        self, owner: str, device: str, page: Page = EVERY
    ) -> list[DeviceToken]:
        """Ordered by creation time, then id; ``page`` of them."""

    async def get_device_token(self, token_id: str) -> DeviceToken | None: ...

    async def delete_device_token(self, owner: str, device: str, token_id: str) -> bool: ...

    # user access tokens
    async def create_access_token(self, token: AccessToken) -> None:
        """Raises Conflict if (owner, token) exists, NotFound if the owner is not a user."""

    async def get_access_token(self, owner: str, token: str) -> AccessToken | None: ...

    async def list_access_tokens(self, owner: str, page: Page = EVERY) -> list[AccessToken]:
        """Ordered by token id; ``page`` of them."""

    async def update_access_token(self, token: AccessToken) -> None:
        """Replaces name, description, enabled, allow, deny, expire and modified of an existing
        token (not created, nor nonce); raises NotFound if absent."""

    async def delete_access_token(self, owner: str, token: str) -> bool:
        """False if it did not exist."""

    # refresh tokens
    async def add_refresh_token(self, token: RefreshToken) -> None:
        """Raises Conflict if the jti exists, NotFound if the user does not. A token added to a
        family that was revoked is revoked too."""

    async def use_refresh_token(self, jti: str, now: int, grace_ms: int = 0) -> RefreshToken | None:
        """Atomically consumes a refresh token. Returns it if it was live (known, unused, not
        expired, family not revoked) and marks it used at ``now``. A token that was already used
        revokes its whole family (reuse detection) and returns None; unknown or expired also
        return None.

        Except a retry, once: a token first used less than ``grace_ms`` before ``now``, none of
        whose successors (the tokens added with it as ``parent``) was used since, and not retried
        before, is returned again, the answer carrying its successor having been lost. Those
        successors are retired then: used, so that presenting one later revokes the family like
        any reuse; and the retried token is never retried again: presenting it a third time
        revokes the family too."""

    async def revoke_refresh_tokens(self, user: str) -> int:
        """Revokes every refresh token of the user (their families stay revoked); returns how
        many were live, that is neither used nor revoked (expiry is not considered)."""

    async def revoke_refresh_family(self, jti: str) -> int:
        """Revokes the family of the refresh token ``jti`` (one login and every token rotated
        from it: a logout); returns how many of its tokens were live. An unknown jti is 0."""

    async def purge_refresh_tokens(self, now: int) -> int:
        """Forgets the refresh tokens that expired at ``now`` or before (used, revoked or not);
        returns how many. Every refresh leaves the used token behind, for reuse detection, which
        an expired token no longer needs: it is refused by its expiry first."""

    # device properties
    async def list_device_properties(self, owner: str, device: str) -> list[DeviceProperty]:
        """Ordered by property id."""

    async def get_device_property(
        self, owner: str, device: str, prop: str
    ) -> DeviceProperty | None: ...

    async def create_device_property(self, prop: DeviceProperty, limit: int) -> None:
        """Raises Conflict if the property exists or the device holds ``limit`` properties
        already, NotFound if the device does not exist."""

    async def update_device_property(self, prop: DeviceProperty) -> None:
        """Replaces name, description, type, value and modified of an existing property (not
        created); raises NotFound if absent."""

    async def set_device_property_value(
        self, owner: str, device: str, prop: str, value: Any, now: int, limit: int
    ) -> None:
        """Sets the value (``modified`` = ``now``), creating the property (empty name,
        description and type) if absent: Conflict if the device holds ``limit`` properties
        already, NotFound if the device does not exist."""

    async def delete_device_property(self, owner: str, device: str, prop: str) -> bool:
        """False if it did not exist."""

    # data buckets
    async def create_bucket(self, bucket: Bucket) -> None:
        """Raises Conflict if the id exists for the owner, NotFound if the owner does not."""

    async def get_bucket(self, owner: str, bucket: str) -> Bucket | None: ...

    async def list_buckets(self, owner: str, page: Page = EVERY) -> list[Bucket]:
        """Ordered by bucket id; ``page`` of them."""

    async def list_device_source_buckets(self) -> list[Bucket]:
        """Every enabled bucket of every user whose ``config.source`` is ``device`` (the ones the
        server fills itself, roost.buckets.feeds), ordered by owner then bucket id."""

    async def update_bucket(self, bucket: Bucket) -> None:
        """Replaces name, description, enabled, config, retention and modified of an existing
        bucket (not created); raises NotFound if absent."""

    async def delete_bucket(self, owner: str, bucket: str) -> bool:
        """Deletes the bucket and every point of it; False if it did not exist."""

    async def write_points(
        self, owner: str, bucket: str, points: Sequence[tuple[int, Any]], replace: bool = True
    ) -> None:
        """Stores ``(ts, value)`` points, all or none, committed when this returns. A point at a
        ts the bucket holds replaces it; with ``replace`` False it takes the first free ts after
        it instead (Conflict when 1000 in a row are taken). Raises NotFound if the bucket does
        not exist."""

    async def read_points(
        self,
        owner: str,
        bucket: str,
        min_ts: int | None,
        max_ts: int | None,
        limit: int,
        descending: bool = False,
    ) -> list[BucketPoint]:
        """At most ``limit`` points with ``min_ts <= ts <= max_ts`` (None: no bound), by ts,
        oldest first unless ``descending``."""

    async def delete_points(
        self, owner: str, bucket: str, min_ts: int | None, max_ts: int | None
    ) -> int:
        """Deletes the points with ``min_ts <= ts <= max_ts`` (None: no bound); how many."""

    async def aggregate_points(
        self, owner: str, bucket: str, query: AggregateQuery
    ) -> list[AggregateRow]:
        """The bucket's points aggregated by ``query`` (roost.store.aggregate says how: periods,
        zones, which rows); computed in the database, not by reading every point out."""

    async def list_retained_buckets(self) -> list[Bucket]:
        """Every bucket of every owner that has a retention, by owner then id."""

    async def expire_points(self, owner: str, bucket: str, before: int, limit: int) -> int:
        """Deletes at most ``limit`` of the oldest points with ``ts < before``; how many."""

    # endpoints
    async def create_endpoint(self, endpoint: Endpoint) -> None:
        """Raises Conflict if the id exists for the owner, NotFound if the owner does not."""

    async def get_endpoint(self, owner: str, endpoint: str) -> Endpoint | None: ...

    async def list_endpoints(self, owner: str, page: Page = EVERY) -> list[Endpoint]:
        """Ordered by endpoint id; ``page`` of them."""

    async def update_endpoint(self, endpoint: Endpoint) -> None:
        """Replaces name, description, enabled, type, config and modified of an existing
        endpoint (not created); raises NotFound if absent."""

    async def delete_endpoint(self, owner: str, endpoint: str) -> bool:
        """False if it did not exist."""
