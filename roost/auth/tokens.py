"""JWT issue and verification (HS256) for every token kind Roost hands out.

Claims follow Thinger.io, since clients decode them to build URLs:
- access token (password/refresh grant): ``usr``, ``iat``, ``exp`` (2 h);
- refresh token: ``jti``, ``iat``, ``exp`` (60 days), tracked server-side;
- device token: ``usr``, ``dev``, ``jti``, ``iat``, optional ``res`` and ``exp``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import jwt

from roost.errors import InvalidToken
from roost.store.base import DeviceToken

ACCESS_TTL_S = 2 * 3600
REFRESH_TTL_S = 60 * 86400
KEY_FILE = "jwt.key"
_ALGORITHM = "HS256"


def load_or_create_key(data_dir: Path) -> bytes:
    """The signing key, generated on first start and kept owner-only in the data dir."""
    path = data_dir / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < 32:
            raise InvalidToken(f"signing key in {path} is too short") from None
        return key
    key = secrets.token_bytes(64)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def new_token_id() -> str:
    return secrets.token_urlsafe(16)


class TokenSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

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

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token we signed that has not expired; InvalidToken otherwise."""
        try:
            claims: dict[str, Any] = jwt.decode(token, self._key, algorithms=[_ALGORITHM])
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token") from None
        return claims

    def _sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)
