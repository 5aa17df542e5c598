"""Hashing of user passwords and device credentials with argon2id.

Parameters follow the OWASP minimum for argon2id (19 MiB, 2 passes, 1 lane): about 20 ms per
check on one core. Hashing is CPU work: async callers run it in a thread (see ``roost.app``).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

TIME_COST = 2
MEMORY_COST_KIB = 19 * 1024
PARALLELISM = 1

_hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)
# Verified against when a user does not exist, so unknown names cost the same as wrong passwords.
_DUMMY_HASH = _hasher.hash("roost-dummy-password")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verify_secret(stored_hash: str | None, secret: str) -> bool:
    """True iff ``secret`` matches; with no stored hash, does the same work and says False."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, secret) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
