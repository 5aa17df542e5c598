"""The ``roost`` command: ``roost serve`` and the admin commands (``roost user ...``).

Every setting of :class:`roost.config.Settings` is a flag (``--http-port``) and an environment
variable (``ROOST_HTTP_PORT``); ``--config FILE`` (or ``ROOST_CONFIG``) reads a TOML file first.
A mistake a person can make (a bad setting, a port in use, a missing data dir) ends the command
with one line on stderr naming it, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

from roost import __version__, ids
from roost.auth.keys import PRIVATE_DIR_MODE
from roost.auth.passwords import hash_password
from roost.backup import DataDirNotEmpty, backup, restore
from roost.config import SETTING_HELP, Settings, default_text, env_name, load_settings
from roost.errors import ConfigError, Conflict, InvalidInput, NotFound, RoostError
from roost.first_admin import password_problem
from roost.store.base import Store, User
from roost.store.postgres_copy import BATCH as POINTS_BATCH
from roost.store.postgres_copy import copy_to_postgres
from roost.store.sqlite import DATABASE_FILE
from roost.wiring import select_store
from roost.workers import run_loop, serve, supervise

log = logging.getLogger("roost")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `roost` explains itself rather than start a server
        if sys.argv[1:] if argv is None else list(argv):  # settings but no command
            return _fail("say which command to run: roost serve, roost user ... (roost --help)", 2)
        parser.print_help()
        return 0
    try:
        settings = _settings(args)
    except RoostError as exc:
        return _fail(exc.message, 2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        _command(args, settings)
    except DataDirNotEmpty as exc:  # restore refuses to mix a backup with another data dir
        return _fail(exc.message, 2)
    except RoostError as exc:
        return _fail(exc.message, 1)
    except sqlite3.Error as exc:
        return _fail(f"the database in {str(settings.data_dir)!r} cannot be used: {exc}", 1)
    except OSError as exc:  # a file the person named or the data dir holds
        where = f"{exc.filename!r}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", 1)
    except KeyboardInterrupt:  # at a password prompt
        print(file=sys.stderr)
        return 130
    return 0


def _fail(message: str, status: int) -> int:
    print(f"roost: {message}", file=sys.stderr)
    return status


def _command(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "serve":
        _ready_data_dir(settings.data_dir)
        if settings.workers > 1:  # a supervisor of worker processes sharing the ports
            supervise(settings)
        else:
            run_loop(serve(settings))
        return
    if args.command == "backup":
        if settings.database_url:
            raise ConfigError("the data is in PostgreSQL: back it up with pg_dump (and the keys)")
        _existing_store(settings)
        version = backup(settings.data_dir, args.file)
        print(f"backed up {str(settings.data_dir)!r} to {str(args.file)!r} (schema {version})")
        return
    if args.command == "restore":
        version = restore(args.file, settings.data_dir)
        print(f"restored {str(args.file)!r} into {str(settings.data_dir)!r} (schema {version})")
        return
    if args.command == "migrate-to-postgres":
        _existing_store(settings)
        _run(_migrate_to_postgres(settings))
        return
    ids.validate(ids.USER, args.name)  # the API's rule: a name it could never address is refused
    if not settings.database_url:
        _existing_store(settings)
    if args.user_command == "add":
        _run(_add_user(settings, args.name, args.password, args.admin))
    elif args.user_command == "logout":
        _run(_logout_user(settings, args.name))
    elif args.user_command == "passwd":
        _run(_change_password(settings, args.name, args.password))


def _parser() -> argparse.ArgumentParser:
    # The settings flags are accepted before and after the command (SUPPRESS keeps a flag given
    # in one place from being reset by the other's default). The user commands take only the
    # ones that say where the store is (with --config).
    server = _settings_flags(fields(Settings))
    store = _settings_flags(f for f in fields(Settings) if f.name in ("data_dir", "database_url"))
    parser = argparse.ArgumentParser(
        prog="roost",
        description="Roost, an IoT server for Thinger.io devices and apps.",
        epilog="`roost serve --help` lists the server's settings (each is a flag, an environment "
        "variable and a key of the --config file); `roost user add --help` and the like describe "
        "the admin commands.",
        parents=[_settings_flags(fields(Settings), hidden=True)],
    )
    parser.add_argument("--version", action="version", version=f"roost {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="{serve,user,backup,restore,migrate-to-postgres}"
    )
    commands.add_parser(
        "serve", help="run the server", description="Run the Roost server.", parents=[server]
    )
    user = commands.add_parser("user", help="manage users", description="Manage users.")
    user_commands = user.add_subparsers(dest="user_command", required=True)
    add = _user_command(user_commands, "add", "add a user", store)
    add.add_argument("--password", help=f"the password ({_PASSWORD_WORDS})")
    add.add_argument("--admin", action="store_true", help="make the user an administrator")
    _user_command(user_commands, "logout", "revoke every refresh token of a user", store)
    passwd = _user_command(
        user_commands, "passwd", "set a user's password (also logs them out everywhere)", store
    )
    passwd.add_argument("--password", help=f"the new password ({_PASSWORD_WORDS})")
    save = commands.add_parser(
        "backup",
        help="write a backup of the data dir, also while the server runs",
        description="Write a consistent snapshot of the database and the key files of the data "
        "dir to FILE (a gzipped tar, owner-only: it holds the server's secrets), also while the "
        "server runs.",
        parents=[store],
    )
    save.add_argument("file", type=Path, metavar="FILE", help="the backup file to write")
    load = commands.add_parser(
        "restore",
        help="fill an empty data dir from a backup",
        description="Fill an empty (or missing) data dir from a backup FILE written by `roost "
        "backup`; the server started on it has the users, devices, tokens and keys of the backup.",
        parents=[store],
    )
    load.add_argument("file", type=Path, metavar="FILE", help="the backup file to read")
    commands.add_parser(
        "migrate-to-postgres",
        help="copy the data dir's database into an empty PostgreSQL database",
        description="Copy everything the data dir's SQLite database holds (users, devices, "
        "tokens, properties, buckets and their points, endpoints) into the empty PostgreSQL "
        "database of --database-url, all or nothing; then serve with that ROOST_DATABASE_URL. "
        "Stop the server first: writes made during the copy are not carried over. The key files "
        "stay in the data dir, which every node needs a copy of.",
        parents=[
            _settings_flags(f for f in fields(Settings) if f.name in ("data_dir", "database_url"))
        ],
    )
    return parser


_PASSWORD_WORDS = "6 to 72 characters; default: asked for twice on the terminal"


def _settings_flags(chosen: Iterable[Field[Any]], hidden: bool = False) -> argparse.ArgumentParser:
    """The flags of the ``chosen`` settings, with what each does and its default (``hidden``:
    accepted before the command, documented after it)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS
        if hidden
        else "TOML file of settings (env ROOST_CONFIG; default: none)",
    )
    for field in chosen:
        name = field.name
        options: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        env = env_name(name)
        if field.type == "bool":  # a switch: --tls-self-signed
            options.update(action="store_const", const=True)
            env += "=1"
        words = f"{SETTING_HELP.get(name, name)} (env {env}; default: {default_text(name)})"
        words = argparse.SUPPRESS if hidden else words.replace("%", "%%")
        flags.add_argument("--" + name.replace("_", "-"), help=words, **options)
    return flags


def _user_command(
    commands: Any, name: str, summary: str, store: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:] + ".", parents=[store]
    )
    command.add_argument("name", help="the user's name")
    return command


def _settings(args: argparse.Namespace) -> Settings:
    config = getattr(args, "config", None) or os.environ.get("ROOST_CONFIG")
    flags: dict[str, Any] = {f.name: getattr(args, f.name, None) for f in fields(Settings)}
    return load_settings(file=Path(config) if config else None, env=os.environ, flags=flags)


def _run(main_coro: Any) -> None:
    run_loop(main_coro)


def _new_password(name: str, password: str | None) -> str:
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidInput(
                f"no terminal to ask for the password of {name!r}: give it with --password"
            )
        password = getpass.getpass(f"Password for {name}: ")
        if getpass.getpass(f"Password for {name} (again): ") != password:
            raise InvalidInput("the two passwords differ; nothing was changed")
    if problem := password_problem(password):
        raise InvalidInput(f"the password {problem}")
    return password


def _ready_data_dir(data_dir: Path) -> None:
    """Make the data dir if needed and check that it can be written, or say why not."""
    shown = str(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data dir {shown!r} is not a directory")
    try:
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data dir {shown!r} cannot be created: {exc.strerror}") from None
    try:
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise ConfigError(f"data dir {shown!r} cannot be written: {exc.strerror}") from None


def _existing_store(settings: Settings) -> None:
    """The admin commands work on a store `roost serve` made: a misspelt --data-dir must not
    start a second, empty user base."""
    shown = str(settings.data_dir)
    hint = "start `roost serve` once to create it, or give the right --data-dir"
    if not settings.data_dir.is_dir():
        raise NotFound(f"data dir {shown!r} does not exist ({hint})")
    if not (settings.data_dir / DATABASE_FILE).is_file():
        raise NotFound(f"data dir {shown!r} holds no Roost database ({hint})")


async def _open_store(settings: Settings) -> Store:
    store = select_store(settings)  # PostgreSQL when database_url is set
    await store.open()
    return store


async def _migrate_to_postgres(settings: Settings) -> None:
    if not settings.database_url:
        raise ConfigError("say where to copy to: --database-url postgresql://user:password@host/db")

    def progress(table: str, rows: int) -> None:
        if table == "bucket_points" and rows % (10 * POINTS_BATCH) == 0:
            print(f"  {rows} bucket points copied", flush=True)

    database = settings.data_dir / DATABASE_FILE
    copied = await copy_to_postgres(database, settings.database_url, progress)
    summary = ", ".join(f"{rows} {table}" for table, rows in copied.items())
    print(f"copied {str(database)!r} into PostgreSQL: {summary}")


async def _add_user(settings: Settings, name: str, password: str | None, admin: bool) -> None:
    password = _new_password(name, password)
    store = await _open_store(settings)
    try:
        loop = asyncio.get_running_loop()
        password_hash = await loop.run_in_executor(None, hash_password, password)
        role = "admin" if admin else "user"
        await store.create_user(User(name, password_hash, role, int(time.time() * 1000)))
    except Conflict:
        raise Conflict(f"user {name!r} already exists") from None
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
