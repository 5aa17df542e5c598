"""Server secrets kept in the data dir: generated on first start, owner-only (0600), in a data dir
that is owner-only too (0700)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from roost.errors import ConfigError

JWT_KEY_FILE = "jwt.key"  # signs every token Roost issues
PEPPER_FILE = "pepper.key"  # keys the hashing of device credentials
KEY_BYTES = 64
PRIVATE_DIR_MODE = 0o700


def private_dir(path: Path) -> None:
    """Creates the data dir owner-only from the start (not chmod after mkdir, which leaves a
    moment when it is open to all) and makes an existing one owner-only too."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)


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
