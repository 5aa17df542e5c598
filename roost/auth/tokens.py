"""JWT issue and verification (HS256) for every token kind Roost hands out.

Claims follow Thinger.io, since clients decode them to build URLs:
- access token (password/refresh grant): ``usr``, ``iat``, ``exp`` (2 h);
- refresh token: ``jti``, ``iat``, ``exp`` (60 days), tracked server-side;
- device token: ``usr``, ``dev``, ``jti``, ``iat``, optional ``res`` and ``exp``;
- user access token: ``usr``, ``jti`` (the token id), ``svr`` (the public host), ``nonce`` (of
  the stored record: a token created again under the same id has another), optional ``exp``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jwt

from roost.errors import InvalidToken
from roost.store.base import DeviceToken

ACCESS_TTL_S = 2 * 3600
REFRESH_TTL_S = 60 * 86400
# A used refresh token is taken again for this long, if its successor was never used: the
# answer that carried the successor may have been lost (a crash, a dropped connection).
REFRESH_RETRY_S = 60
_ALGORITHM = "HS256"


def new_token_id() -> str:
    return secrets.token_urlsafe(16)


class TokenSigner:
    """Signs and verifies tokens. Verified tokens are remembered (bounded, oldest forgotten
    first), so a client sending the same token on every call pays the HMAC and JSON work once;
    expiry is still checked on every use."""

    def __init__(self, key: bytes, cache_size: int = 4096) -> None:
        self._key = key
        self._cache_size = cache_size
        self._verified: dict[str, dict[str, Any]] = {}

    def access_token(self, user: str, now_s: int) -> str:
        return self._sign({"usr": user, "iat": now_s, "exp": now_s + ACCESS_TTL_S})

    def refresh_token(self, jti: str, now_s: int) -> str:
        return self._sign({"jti": jti, "iat": now_s, "exp": now_s + REFRESH_TTL_S})

    def device_token(self, token: DeviceToken) -> str:
        claims: dict[str, Any] = {
            "usr": token.owner,
            "dev": token.device,
            "jti": token.id,
            "iat": token.created // 1000,
        }
        if token.resources is not None:
            claims["res"] = list(token.resources)
        if token.expires is not None:
            claims["exp"] = token.expires // 1000
        return self._sign(claims)

    def user_token(
        self, user: str, token_id: str, server: str, expires_ms: int | None, nonce: str
    ) -> str:
        """A user-defined access token: ``usr``, ``jti``, ``svr``, ``nonce`` (the record's, left
        out when empty, as for tokens stored before nonces), and ``exp`` only if it expires. The
        same arguments give the same JWT, so it can be shown again later."""
        claims: dict[str, Any] = {"usr": user, "jti": token_id, "svr": server}
        if nonce:
            claims["nonce"] = nonce
        if expires_ms is not None:
            claims["exp"] = expires_ms // 1000
        return self._sign(claims)

    def verify(self, token: str) -> Mapping[str, Any]:
        """The claims of a token we signed that has not expired; InvalidToken otherwise."""
        claims = self._verified.get(token)
        if claims is None:
            if not is_canonical(token):
                raise InvalidToken("invalid token")
            try:
                claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM])
            except jwt.ExpiredSignatureError:
                raise InvalidToken("token expired") from None
            except jwt.PyJWTError:
                raise InvalidToken("invalid token") from None
            if len(self._verified) >= self._cache_size:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires <= time.time():
            raise InvalidToken("token expired")
        return MappingProxyType(claims)

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)


def is_canonical(token: str) -> bool:
    """Three segments, each unpadded base64url that encodes back to itself. PyJWT decodes
    leniently (padding, non-zero unused bits), so one signed token would otherwise have several
    spellings, each passing: the verified-token cache and anything keyed by the text (or a
    deny-list) must see one spelling only."""
    segments = token.split(".")
    if len(segments) != 3:
        return False
    for segment in segments:
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError):
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
            return False
    return True
