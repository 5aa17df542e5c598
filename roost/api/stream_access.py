"""An open stream keeps only the access it was opened with: it ends when that access goes.

A stream (the stats SSE, a resource WebSocket) is opened by a token for one action on one device,
or (the events WebSocket) on a user's tree. :meth:`StreamAccess.open` checks it as every request
is checked (:func:`authorize`), and that the device, if any, exists and is enabled. While the
stream runs, :meth:`StreamAccess.lost` waits for the moment that stops holding and returns why;
the stream then ends with that reason. It checks again:

- at once when the bus announces a :class:`~roost.bus.base.Revocation` in the tree of the stream's
  user or of the device's owner. The routes that delete, disable or change a token, change a
  password, log a user out everywhere, or disable or delete a device announce one; a NATS bus
  carries it to every node. A changed token that still permits the stream keeps it. A password
  change or a logout everywhere ends the streams of the user's *login sessions* (which their JWT
  alone would keep alive for up to 2 h), not those of access or device tokens;
- when the token expires (the JWT's ``exp``, an access token's ``expire``);
- every ``stream_recheck_interval`` seconds, for what another process writes to the store (such as
  ``roost user passwd``): the token record, the device, and for a login session its user and the
  user's password hash. ``roost user logout`` run in another process leaves nothing in the store a
  login session can be checked against: streams of those sessions go on until their token expires,
  as requests made with those tokens do.

A check that fails for another reason than a refusal (the store broke) ends the stream too: a
stream is never kept open on access that could not be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from roost.api.access import Principal, authorize, bearer_token
from roost.api.devices import find_device
from roost.bus.base import Revocation, Revoked
from roost.errors import Forbidden, InvalidToken, NotFound, RoostError
from roost.services import Services

log = logging.getLogger("roost.api")

EXPIRY_MARGIN_S = 0.01  # wake just after an expiry, never just before it
# revocations that end the streams they concern without a check: nothing stored says otherwise
ENDING = frozenset({Revoked.SESSIONS, Revoked.USER})


@dataclass(frozen=True, slots=True)
class Grant:
    """What an open stream relies on, as last checked."""

    user: str  # whose token opened it
    token: str | None  # the access or device token's id; None: a login session
    expires_ms: int | None  # when the token stops working, None: never
    password_hash: str | None  # a login session's user's password when it was checked


class StreamAccess:
    def __init__(
        self, connection: HTTPConnection, action: str, owner: str, device: str | None
    ) -> None:
        """``device``: the device the stream is on; None, a stream on ``owner``'s tree, whose
        action is on the user itself (SubscribeUserEvents)."""
        self._connection = connection
        self._services: Services = connection.app.state.services
        self._action = action
        self._owner = owner
        self._device = device
        self._grant: Grant | None = None
        self._nudged = asyncio.Event()
        self._ended: str | None = None  # a revocation that ends the stream without a check

    async def open(self) -> Principal:
        """Check the stream may open; raises RoostError (401, 403, 404) as a request would."""
        principal, self._grant = await self._check()
        return principal

    async def lost(self) -> str:
        """Wait until the stream may no longer run; the reason, for its client."""
        if self._grant is None:
            raise RuntimeError("StreamAccess.lost() before open()")
        opened = self._grant
        bus = self._services.bus
        users = {opened.user, self._owner}
        for user in users:
            bus.watch_revocations(user, self._heard)
        try:
            self._nudged.set()  # check once at once: a revocation may have come since open()
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudged.wait(), self._until_next_check())
                self._nudged.clear()
                if self._ended is not None:
                    return self._ended
                reason = await self._recheck(opened)
                if reason is not None:
                    return reason
        finally:
            for user in users:
                bus.unwatch_revocations(user, self._heard)

    async def _recheck(self, opened: Grant) -> str | None:
        try:
            _, grant = await self._check()
        except RoostError as exc:
            return exc.message
        except Exception:
            log.exception("checking the access of a stream of %s failed", self._owner)
            return "access could not be checked"
        if grant.password_hash != opened.password_hash:
            return "password changed"
        self._grant = grant
        return None

    def _until_next_check(self) -> float:
        delay = self._services.settings.stream_recheck_interval
        expires_ms = self._grant.expires_ms if self._grant is not None else None
        if expires_ms is not None:
            delay = min(delay, max(0.0, expires_ms / 1000 - self._services.clock()))
            delay += EXPIRY_MARGIN_S
        return delay

    def _heard(self, revocation: Revocation) -> None:
        if self._grant is None or not _concerns(revocation, self._grant, self._owner, self._device):
            return
        if revocation.what in ENDING:
            self._ended = revocation.reason
        self._nudged.set()

    async def _check(self) -> tuple[Principal, Grant]:
        principal, grant = await self._access()
        if self._device is not None:
            try:
                device = await find_device(self._services, self._owner, self._device)
            except NotFound:
                # gone with what the access rests on (a user deleted, their devices with them,
                # since the reads above)? that is the reason; else the device's own deletion
                await self._access()
                raise
            if not device.enabled:
                raise Forbidden(f"device {self._device!r} is disabled")
        return principal, grant

    async def _access(self) -> tuple[Principal, Grant]:
        """The caller's access to the stream, as it stands now; the error that ends it if lost."""
        services = self._services
        owner, device_id = self._owner, self._device
        resource_id = owner if device_id is None else device_id
        principal = await authorize(self._connection, self._action, owner, resource_id)
        claims = services.signer.verify(bearer_token(self._connection))  # remembered: cheap
        expires_ms = _ms(claims.get("exp"))
        password_hash = None
        if principal.permissions is None:  # a login session: its user must still be there
            user = await services.store.get_user(principal.user)
            if user is None:
                raise InvalidToken("user deleted")
            password_hash = user.password_hash
        elif principal.token is not None and "dev" not in claims:  # an access token
            record = await services.store.get_access_token(principal.user, principal.token)
            if record is not None and record.expire is not None:
                expires_ms = record.expire if expires_ms is None else min(expires_ms, record.expire)
        return principal, Grant(principal.user, principal.token, expires_ms, password_hash)


def _concerns(revocation: Revocation, grant: Grant, owner: str, device: str | None) -> bool:
    """Whether ``revocation`` names something a stream with ``grant`` on ``owner``'s
    ``device`` (None: on the user's tree) relies on."""
    what, user = revocation.what, revocation.user
    if what is Revoked.SESSIONS:
        return grant.token is None and user == grant.user
    if what is Revoked.USER:
        return user in (grant.user, owner)
    if what is Revoked.DEVICE:
        return device is not None and (user, revocation.id) == (owner, device)
    return user == grant.user and revocation.id == grant.token  # an access or device token


def _ms(exp: object) -> int | None:
    """A JWT ``exp`` (seconds) in ms, None when absent."""
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return int(exp * 1000)
    return None
