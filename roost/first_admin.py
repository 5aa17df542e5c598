"""The first admin of an empty store, made at start-up, and the rule every new password follows."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys

from roost.api.users import PASSWORD_LENGTH
from roost.auth.passwords import hash_password
from roost.errors import ConfigError, Conflict
from roost.services import Services
from roost.store.base import User

log = logging.getLogger("roost")


async def ensure_admin(services: Services) -> None:
    """On an empty store, create the first admin (its password printed once if generated)."""
    if await services.store.count_users() > 0:
        return
    settings = services.settings
    chosen = settings.admin_password
    if chosen is not None and (problem := password_problem(chosen)):
        raise ConfigError(f"setting 'admin_password' {problem} (unset it for a random one)")
    password = chosen or secrets.token_urlsafe(12)
    loop = asyncio.get_running_loop()
    password_hash = await loop.run_in_executor(None, hash_password, password)
    try:
        await services.store.create_user(
            User(settings.admin_user, password_hash, "admin", services.now_ms())
        )
    except Conflict:  # another node sharing the database, starting at the same time, made it
        log.info("admin user %r was created by another node", settings.admin_user)
        return
    log.info("created admin user %r", settings.admin_user)
    if settings.admin_password is None:
        print(
            f"Roost: created admin user {settings.admin_user!r} with password: {password}\n"
            "       (shown once; set ROOST_ADMIN_PASSWORD to choose it)",
            file=sys.stderr,
            flush=True,
        )


def password_problem(password: str) -> str | None:
    """What is wrong with a new user password under the API's rule, or None if nothing."""
    low, high = PASSWORD_LENGTH
    if not low <= len(password) <= high:
        return f"must have {low} to {high} characters"
    return None
