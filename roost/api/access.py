"""Who is calling, and may they do this: the one authorization path of the REST API.

A request carries a JWT as ``Authorization: Bearer ...`` or ``?authorization=...``. It resolves to
a :class:`Principal`: a user session (access token) or a device token. Every route names the
Thinger action it performs and calls :func:`authorize` with the user tree and device it touches.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from roost.errors import Forbidden, InvalidToken, Unauthenticated
from roost.services import Services

# Actions a device token may perform: call its device's resources (descriptions included).
DEVICE_TOKEN_ACTIONS = frozenset({"AccessDeviceResources"})


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    device: str | None = None  # set for device tokens
    resources: tuple[str, ...] | None = None  # device token limited to these resources


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated("authorization header must be 'Bearer <token>'")
    query_token = request.query_params.get("authorization")
    if query_token:
        return query_token
    raise Unauthenticated("missing access token")


async def authenticate(request: Request, services: Services) -> Principal:
    claims = services.signer.verify(bearer_token(request))
    user = claims.get("usr")
    if not isinstance(user, str):
        raise InvalidToken("invalid token")
    if "dev" not in claims:
        if "jti" in claims:  # a user access token (not issued by this version) or a refresh token
            raise InvalidToken("invalid token")
        return Principal(user=user)
    token_id = claims.get("jti")
    record = await services.store.get_device_token(token_id) if isinstance(token_id, str) else None
    if record is None or record.owner != user or record.device != claims["dev"]:
        raise InvalidToken("token revoked")
    return Principal(user=user, device=record.device, resources=record.resources)


async def authorize(
    request: Request,
    action: str,
    owner: str,
    device: str | None = None,
    resource: str | None = None,
) -> Principal:
    """Authenticate the request and check it may perform ``action`` in ``owner``'s tree."""
    services: Services = request.app.state.services
    principal = await authenticate(request, services)
    if principal.device is not None:
        if (
            action not in DEVICE_TOKEN_ACTIONS
            or principal.user != owner
            or principal.device != device
            or (
                principal.resources is not None
                and resource is not None
                and resource not in principal.resources
            )
        ):
            raise Forbidden("token does not grant access to this resource")
        return principal
    if principal.user != owner:
        caller = await services.store.get_user(principal.user)
        if caller is None or not caller.is_admin:
            raise Forbidden(f"access to user {owner!r} is not allowed")
    return principal
