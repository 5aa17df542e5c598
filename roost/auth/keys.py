"""Server secrets kept in the data dir: generated on first start, owner-only (0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from roost.errors import ConfigError

JWT_KEY_FILE = "jwt.key"  # signs every token Roost issues
PEPPER_FILE = "pepper.key"  # keys the hashing of device credentials
KEY_BYTES = 64


def load_or_create_key(data_dir: Path, name: str) -> bytes:
    path = data_dir / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    return key


def _read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise ConfigError(f"key file {str(path)!r} is not hex") from None
    if len(key) < 32:
        raise ConfigError(f"key file {str(path)!r} holds fewer than 32 bytes")
    return key
