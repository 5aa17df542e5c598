"""Hashing of user passwords and device credentials with argon2id.

User passwords: argon2id at the OWASP minimum (19 MiB, 2 passes, 1 lane), about 25 ms per check.
Logins are rare and rate limited, so each one can afford it.

Device credentials: a device proves itself on every (re)connection, and after a restart every
device reconnects at once. At 25 ms a check, 19,000 devices would need 8 minutes of CPU. So:
- the credentials are first keyed with HMAC-SHA256 and a server secret (the *pepper*, kept in the
  data dir, never in the database), and
- the keyed value is hashed with a light argon2id (1 MiB, 1 pass, 1 lane): about 0.5 ms.
A stolen database alone is useless for guessing (every guess needs the pepper, a 512-bit key);
with the pepper stolen too, each guess still costs an argon2id run with 1 MiB of memory. Checks
run in threads (argon2 releases the GIL); async callers use run_in_executor.
"""

from __future__ import annotations

import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_users = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_devices = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# Checked against when the user or device does not exist: unknown names cost as much as known.
_DUMMY_USER_HASH = _users.hash("roost-dummy-password")
_DUMMY_DEVICE_HASH = _devices.hash("roost-dummy-credentials")


def hash_password(password: str) -> str:
    return _users.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True iff ``password`` matches; with no stored hash, does the same work and says False."""
    return _verify(_users, stored_hash, _DUMMY_USER_HASH, password)


class DeviceCredentials:
    """Hashes and checks device credentials, keyed with the server's pepper."""

    def __init__(self, pepper: bytes) -> None:
        self._pepper = pepper

    def hash(self, credentials: str) -> str:
        return _devices.hash(self._keyed(credentials))

    def verify(self, stored_hash: str | None, credentials: str) -> bool:
        return _verify(_devices, stored_hash, _DUMMY_DEVICE_HASH, self._keyed(credentials))

    def _keyed(self, credentials: str) -> bytes:
        return hmac.new(self._pepper, credentials.encode("utf-8"), hashlib.sha256).digest()


def _verify(
    hasher: PasswordHasher, stored_hash: str | None, dummy: str, secret: str | bytes
) -> bool:
    try:
        return hasher.verify(stored_hash or dummy, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
