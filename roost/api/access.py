"""Who is calling, and may they do this: the one authorization path of the REST API.

A request carries a JWT as ``Authorization: Bearer ...`` or ``?authorization=...``. It resolves to
a :class:`Principal`, by the token's claims:

- a **session** (``usr`` and ``exp``, from ``POST /oauth/token``): its user may do anything in
  their own tree, an admin in every tree. Checked from the JWT alone, without the database;
- a **user access token** (``usr`` and ``jti``, no ``dev``): one primary-key lookup of the stored
  token, which must exist, carry the JWT's ``nonce``, be enabled and not have expired. It may act
  in its owner's tree only, as its ``allow``/``deny`` permissions say
  (:mod:`roost.auth.permissions`: deny beats allow, unknown names in allow are ignored);
- a **device token** (``usr``, ``dev`` and ``jti``): one lookup too. It is expressed in the same
  grammar, ``allow {"Device": {<dev>: ["AccessDeviceResources"]}}``, plus its list of resources
  (a name covers the resources nested under it: :meth:`Principal.may_use`).

Token secrets (the JWTs of access and device tokens) are shown to login sessions only
(:attr:`Principal.is_session`), never to a token, whatever it is allowed.

Every route names the Thinger action it performs and calls :func:`authorize` with the user tree
and the resource id it touches; the resource type comes from the action. Being the one door of
every secured route, it also turns away malformed requests before any work: ids in the path that
break the grammar of :mod:`roost.ids` (``..``, NUL, too long) and query strings with more than
``MAX_QUERY_PARAMS`` parameters or a value longer than ``MAX_QUERY_VALUE`` characters (400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import unquote_plus

from starlette.requests import HTTPConnection

from roost import ids
from roost.auth.permissions import ACTIONS, DEVICE, ID_KINDS, USER, Entry, Permissions
from roost.errors import Forbidden, InvalidInput, InvalidToken, Unauthenticated
from roost.services import Services

# The action of each operation -> the resource type it is checked against: the Thinger actions,
# plus Roost's own where Thinger has none.
ACTION_TYPES: Mapping[str, str] = MappingProxyType({**ACTIONS, "DeleteUserRefreshTokens": USER})

DESCRIBED = "api"  # the last name of a path that asks a device to describe what comes before
MAX_QUERY_PARAMS = 32
MAX_QUERY_VALUE = 1024  # characters; the token in ?authorization= is bounded by the URL limit


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    permissions: Permissions | None = None  # None: a session, bound only by the owner tree
    resources: tuple[str, ...] | None = None  # a device token's resources, None: all
    token: str | None = None  # id of the user or device token
    device: str | None = None  # the device a device token is bound to; None: not a device token

    @property
    def is_session(self) -> bool:
        """A login session (``POST /oauth/token``): the only caller shown token secrets. Past
        :func:`authorize` it is the tree's owner or an admin, who may mint tokens there anyway."""
        return self.permissions is None

    def require_session(self, what: str) -> None:
        """Tokens are minted and changed by login sessions only: a token allowed to create or
        change tokens could otherwise hand out more than it holds, or outlive its own revocation
        in what it made."""
        if not self.is_session:
            raise Forbidden(f"{what} from a login session, not with a token")

    def may_use(self, resource: str) -> bool:
        """Whether a device token's resource list covers ``resource`` (a path, ``"a/b"``): a
        listed name grants that resource and every resource nested under it. The one rule for
        calls, streams, descriptions and listings alike.

        A path whose last name is ``api`` counts as the path before it, since that is how the
        legacy wire asks a device to describe it (a legacy device answers ``api`` alone with its
        whole listing): ``a/api`` is ``a``, and ``api`` is the device as a whole, which only a
        caller without a resource list may use."""
        allowed = self.resources
        if allowed is None:
            return True
        parts = resource.split("/")
        if parts[-1] == DESCRIBED:
            parts.pop()
        return any("/".join(parts[:depth]) in allowed for depth in range(1, len(parts) + 1))


def device_token_permissions(device: str) -> Permissions:
    return Permissions(allow=(Entry(DEVICE, device, ("AccessDeviceResources",)),))


def bearer_token(request: HTTPConnection) -> str:
    header = _header(request, b"authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated("authorization header must be 'Bearer <token>'")
    query_token = _query_token(request.scope.get("query_string", b""))
    if query_token:
        return query_token
    raise Unauthenticated("missing access token")


def _query_token(query: bytes) -> str | None:
    """The first non-empty ``authorization`` parameter, by its name as sent. Only that plain
    spelling counts, not ``%61uthorization`` (which Starlette would decode to the same name):
    it is the one that log redaction (:mod:`roost.redact`) and proxies' log filters recognise."""
    if b"authorization=" not in query:
        return None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if name == b"authorization" and value:
            return unquote_plus(value.decode("latin-1"))
    return None


def _header(request: HTTPConnection, name: bytes) -> str | None:
    """The first value of a header, read straight from the ASGI scope (as Starlette's ``headers``
    would give it, without building that object on every call)."""
    for key, value in request.scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def authenticate(request: HTTPConnection, services: Services) -> Principal:
    claims = services.signer.verify(bearer_token(request))
    user, token_id, device = claims.get("usr"), claims.get("jti"), claims.get("dev")
    if not isinstance(user, str):  # a refresh token, or not ours
        raise InvalidToken("invalid token")
    if token_id is None and device is None:
        return Principal(user)
    if not isinstance(token_id, str):
        raise InvalidToken("invalid token")
    if device is None:
        return await _access_token(services, user, token_id, claims.get("nonce", ""))
    return await _device_token(services, user, device, token_id)


async def _access_token(services: Services, user: str, token_id: str, nonce: object) -> Principal:
    """``nonce`` must be the stored record's: a JWT of a token deleted and created again under the
    same id carries the nonce of the old record (or none, before nonces) and is revoked."""
    record = await services.store.get_access_token(user, token_id)
    if record is None or record.nonce != nonce:
        raise InvalidToken("token revoked")
    if not record.enabled:
        raise InvalidToken("token disabled")
    if record.expire is not None and record.expire <= services.now_ms():
        raise InvalidToken("token expired")
    permissions = services.permissions.of((user, token_id), record, record.allow, record.deny)
    return Principal(user, permissions, token=token_id)


async def _device_token(services: Services, user: str, device: object, token_id: str) -> Principal:
    record = await services.store.get_device_token(token_id)
    if record is None or record.owner != user or record.device != device:
        raise InvalidToken("token revoked")
    if record.expires is not None and record.expires <= services.now_ms():
        raise InvalidToken("token expired")
    permissions = device_token_permissions(record.device)
    return Principal(user, permissions, record.resources, token_id, record.device)


async def authorize(
    request: HTTPConnection,
    action: str,
    owner: str,
    resource_id: str | None = None,
    resource: str | None = None,
) -> Principal:
    """Authenticate the request and check it may do ``action`` in ``owner``'s tree.

    ``resource_id`` names the device, token, ... acted on (None: the collection, for List* and
    Create* actions); its type is the action's (:data:`ACTION_TYPES`). ``resource`` is the path
    of the device resource called or described (``"a/b"``), which a device token may limit
    (:meth:`Principal.may_use`). Raises Unauthenticated (401), InvalidInput (400) for a
    malformed id, or Forbidden (403).
    """
    services, principal = await _authenticated(request)
    resource_type = ACTION_TYPES[action]
    _check_ids(owner, resource_type, resource_id)
    if principal.permissions is None:
        if principal.user != owner:
            await _require_admin(services, principal, f"access to user {owner!r}")
        return principal
    if principal.user != owner:
        raise Forbidden(f"the token may not act for user {owner!r}")
    if not principal.permissions.permits(action, resource_type, resource_id):
        raise Forbidden(f"the token does not grant {action} here")
    if resource is not None and not principal.may_use(resource):
        raise Forbidden("the token does not grant access to this resource")
    return principal


async def authorize_admin(
    request: HTTPConnection, action: str, user: str | None = None
) -> Principal:
    """Authenticate the request and check it is an administrator's login session: the actions
    on the server's users (``/v1/users``, roles, enabling), which no tree owner has. Tokens are
    refused whatever they allow (Forbidden), as for minting tokens: a token must not make the
    accounts that could mint more. ``user`` is the user acted on, checked as an id."""
    services, principal = await _authenticated(request)
    if user is not None:
        ids.validate(ids.USER, user)
    if action not in ACTION_TYPES:
        raise KeyError(action)
    principal.require_session(f"{action} is done")
    await _require_admin(services, principal, action)
    return principal


async def authorize_operator(request: HTTPConnection, action: str) -> Principal:
    """Authenticate the request and check it may do ``action`` on the server as a whole (read
    its metrics): an administrator's login session, or an access token of an administrator that
    allows ``action`` on its own user (what a scraper holds: it does not expire with a login).
    Device tokens are refused (Forbidden), as is every caller who is not an administrator."""
    services, principal = await _authenticated(request)
    if principal.device is not None:
        raise Forbidden(f"{action} is not for device tokens")
    permissions = principal.permissions
    if permissions is not None and not permissions.permits(
        action, ACTION_TYPES[action], principal.user
    ):
        raise Forbidden(f"the token does not grant {action}")
    await _require_admin(services, principal, action)
    return principal


async def _authenticated(request: HTTPConnection) -> tuple[Services, Principal]:
    services: Services = request.app.state.services
    if request.scope.get("query_string"):
        _check_query(request)
    return services, await authenticate(request, services)


async def _require_admin(services: Services, principal: Principal, what: str) -> None:
    """THE check that the caller is an administrator now: an admin disabled meanwhile (whose
    login is still valid until it expires) holds none of an administrator's powers."""
    caller = await services.store.get_user(principal.user)
    if caller is None or not caller.is_admin or not caller.enabled:
        raise Forbidden(f"{what} is for enabled administrators only")


def _check_query(request: HTTPConnection) -> None:
    items = request.query_params.multi_items()
    if len(items) > MAX_QUERY_PARAMS:
        raise InvalidInput(f"more than {MAX_QUERY_PARAMS} query parameters")
    for name, value in items:
        if len(value) > MAX_QUERY_VALUE and name != "authorization":
            raise InvalidInput(f"query parameter {name[:32]!r} is too long")


def _check_ids(owner: str, resource_type: str, resource_id: str | None) -> None:
    ids.validate(ids.USER, owner)
    if resource_id is not None:
        ids.validate(ID_KINDS[resource_type], resource_id)
