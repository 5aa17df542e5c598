"""The ``roost`` command: ``roost serve`` (the default) and admin commands.

Every setting of :class:`roost.config.Settings` is a flag (``--http-port``) and an environment
variable (``ROOST_HTTP_PORT``); ``--config FILE`` (or ``ROOST_CONFIG``) reads a TOML file first.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from roost import __version__
from roost.api.validate import check_id
from roost.app import DATABASE_FILE, Roost
from roost.auth.passwords import hash_password
from roost.config import Settings, env_name, load_settings
from roost.errors import Conflict, NotFound, RoostError
from roost.store.base import User
from roost.store.sqlite import SQLiteStore

log = logging.getLogger("roost")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except RoostError as exc:
        print(f"roost: {exc.message}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = args.command or "serve"
    try:
        if command == "serve":
            _run(_serve(settings))
        elif command == "user" and args.user_command == "add":
            _run(_add_user(settings, args.name, args.password, args.admin))
        elif command == "user" and args.user_command == "logout":
            _run(_logout_user(settings, args.name))
        elif command == "user" and args.user_command == "passwd":
            _run(_change_password(settings, args.name, args.password))
        else:
            _parser().print_help()
            return 2
    except RoostError as exc:
        print(f"roost: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    # The settings flags are accepted before and after the command (SUPPRESS keeps a flag given
    # in one place from being reset by the other's default).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="TOML settings file (env ROOST_CONFIG)",
    )
    for field in fields(Settings):
        flag = "--" + field.name.replace("_", "-")
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        if field.type == "bool":  # a switch: --tls-self-signed
            options.update(action="store_const", const=True)
        common.add_argument(flag, help=f"env {env_name(field.name)}", **options)
    parser = argparse.ArgumentParser(prog="roost", description="Roost IoT server", parents=[common])
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="run the server (the default)", parents=[common])
    user = commands.add_parser("user", help="manage users")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = user_commands.add_parser("add", help="add a user", parents=[common])
    add.add_argument("name")
    add.add_argument("--password", help="the password (prompted for when absent)")
    add.add_argument("--admin", action="store_true", help="make the user an administrator")
    logout = user_commands.add_parser(
        "logout", help="revoke every refresh token of a user (log out everywhere)", parents=[common]
    )
    logout.add_argument("name")
    passwd = user_commands.add_parser(
        "passwd", help="set a user's password (also logs them out everywhere)", parents=[common]
    )
    passwd.add_argument("name")
    passwd.add_argument("--password", help="the new password (prompted for when absent)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None) or os.environ.get("ROOST_CONFIG")
    flags: dict[str, Any] = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(file=Path(config) if config else None, env=os.environ, flags=flags)


def _run(main_coro: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main_coro)
    else:
        uvloop.run(main_coro)


async def _serve(settings: Settings) -> None:
    # Long-lived objects made at start-up stay out of the cyclic collector, and it runs less
    # often: a resource call allocates many short-lived containers, none of them cyclic.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await Roost(settings).run_until(stop)


def _new_password(name: str, password: str | None) -> str:
    if password is None:
        password = getpass.getpass(f"Password for {name}: ")
    if len(password) < 6:
        print("roost: the password must have at least 6 characters", file=sys.stderr)
        raise SystemExit(1)
    return password


async def _open_store(settings: Settings) -> SQLiteStore:
    store = SQLiteStore(settings.data_dir / DATABASE_FILE)
    await store.open()
    return store


async def _add_user(settings: Settings, name: str, password: str | None, admin: bool) -> None:
    check_id(name, "user name")
    password = _new_password(name, password)
    store = await _open_store(settings)
    try:
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, hash_password, password)
        role = "admin" if admin else "user"
        await store.create_user(User(name, password_hash, role, int(time.time() * 1000)))
    except Conflict:
        print(f"roost: user {name!r} already exists", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        await store.close()
    print(f"added {'admin' if admin else 'user'} {name!r}")


async def _logout_user(settings: Settings, name: str) -> None:
    store = await _open_store(settings)
    try:
        if await store.get_user(name) is None:
            raise NotFound(f"no user {name!r}")
        revoked = await store.revoke_refresh_tokens(name)
    finally:
        await store.close()
    print(f"revoked {revoked} refresh token(s) of {name!r}")


async def _change_password(settings: Settings, name: str, password: str | None) -> None:
    password = _new_password(name, password)
    store = await _open_store(settings)
    try:
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, hash_password, password)
        revoked = await store.set_password(name, password_hash)
    except NotFound:
        raise NotFound(f"no user {name!r}") from None
    finally:
        await store.close()
    print(f"password of {name!r} changed; revoked {revoked} refresh token(s)")


if __name__ == "__main__":
    sys.exit(main())
