"""``roost backup FILE`` and ``roost restore FILE``: everything a data dir holds, in one file.

A backup is ONE gzipped tar file, owner-only (0600) since it holds secrets, with these members:

- ``roost-backup.json``, the manifest: the format, the Roost and schema versions that wrote it,
  and the SHA-256 of each other member;
- ``roost.db``, a snapshot of the database taken with SQLite's online backup API from a separate
  read-only connection: one step, inside one read transaction, so it is the state of one moment
  even while the server writes (WAL readers do not block the writer);
- ``jwt.key`` (without it every token dies) and ``pepper.key`` (without it no device credential
  matches).

One file rather than a directory: it is written to a temporary name beside FILE and renamed only
when complete (a failed backup leaves no half-written file), and one file is one thing to copy,
encrypt or delete. The self-signed TLS pair is left out: Roost makes a new one when it is missing.

A restore fills an empty data dir: the files are checked (the manifest, every digest, a schema
version this Roost knows) and written owner-only under temporary names, the database last, so a
failed restore leaves the data dir as empty as it was.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from roost import __version__
from roost.auth.keys import JWT_KEY_FILE, PEPPER_FILE, PRIVATE_DIR_MODE
from roost.errors import Conflict, InvalidInput, NotFound
from roost.store.migrate import current_version, load_migrations
from roost.store.sqlite import DATABASE_FILE

MANIFEST = "roost-backup.json"
FORMAT = "roost-backup"
FORMAT_VERSION = 1
KEY_FILES = (JWT_KEY_FILE, PEPPER_FILE)
FILE_MODE = 0o600
_SMALL_MEMBER = 64 * 1024  # the manifest and the key files are far smaller
_CHUNK = 1 << 20


class DataDirNotEmpty(Conflict):
    """A restore may only fill an empty data dir."""


def backup(data_dir: Path, target: Path) -> int:
    """Writes the backup of ``data_dir`` to ``target`` and returns its schema version."""
    database = data_dir / DATABASE_FILE
    keys = {name: _key_text(data_dir / name) for name in KEY_FILES}
    folder = target.parent
    if target.is_dir():
        raise InvalidInput(f"{str(target)!r} is a directory: name the backup file to write")
    if not folder.is_dir():
        raise NotFound(f"directory {str(folder)!r} of the backup file does not exist")
    staging = Path(tempfile.mkdtemp(prefix=".roost-backup-", dir=folder))  # 0700
    try:
        snapshot = staging / DATABASE_FILE
        version = _snapshot(database, snapshot)
        digests = {DATABASE_FILE: _sha256_file(snapshot)}
        digests.update({name: _sha256(text) for name, text in keys.items()})
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "roost": __version__,
            "schema_version": version,
            "created_ms": time.time_ns() // 1_000_000,
            "sha256": digests,
        }
        fd, partial = tempfile.mkstemp(prefix=".roost-backup-", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                    described = json.dumps(manifest, indent=1).encode()
                    _add(tar, MANIFEST, io.BytesIO(described), len(described))
                    with snapshot.open("rb") as fh:
                        _add(tar, DATABASE_FILE, fh, snapshot.stat().st_size)
                    for name, text in keys.items():
                        _add(tar, name, io.BytesIO(text), len(text))
                raw.flush()
                os.fsync(raw.fileno())
            os.chmod(partial, FILE_MODE)
            os.replace(partial, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    _sync_dir(folder)
    return version


def restore(source: Path, data_dir: Path) -> int:
    """Fills the empty (or missing) ``data_dir`` from the backup ``source``; returns its schema
    version."""
    shown = str(data_dir)
    if data_dir.exists():
        if not data_dir.is_dir():
            raise DataDirNotEmpty(f"data dir {shown!r} is not a directory")
        if (data_dir / DATABASE_FILE).exists() or any(data_dir.iterdir()):
            raise DataDirNotEmpty(
                f"data dir {shown!r} is not empty: restore fills an empty data dir only"
            )
    with _open_backup(source) as tar:
        manifest = _manifest(tar, source)
        created = not data_dir.exists()
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        data_dir.chmod(PRIVATE_DIR_MODE)
        written: list[Path] = []
        try:
            _restore_files(tar, manifest, source, data_dir, written)
        except BaseException:
            for path in written:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if created:
                with contextlib.suppress(OSError):
                    data_dir.rmdir()
            raise
    _sync_dir(data_dir)
    return int(manifest["schema_version"])


def _snapshot(database: Path, snapshot: Path) -> int:
    """Copies ``database`` to ``snapshot`` with the online backup API; returns its version."""
    if not database.is_file():
        raise NotFound(f"{str(database)!r} does not exist")
    fd = os.open(snapshot, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    # mode=rw: never creates a database; no write is made through it
    source = sqlite3.connect(database.resolve().as_uri() + "?mode=rw", uri=True)
    try:
        source.execute("PRAGMA busy_timeout = 10000")
        copy = sqlite3.connect(snapshot, isolation_level=None)
        try:
            source.backup(copy)  # all pages in one step: one read transaction, one moment
            copy.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            version = current_version(copy)
        finally:
            copy.close()
    finally:
        source.close()
    if version == 0:
        raise NotFound(f"{str(database)!r} holds no Roost database")
    return version


def _restore_files(
    tar: tarfile.TarFile,
    manifest: dict[str, Any],
    source: Path,
    data_dir: Path,
    written: list[Path],
) -> None:
    digests: dict[str, str] = manifest["sha256"]
    keys = {name: _member_bytes(tar, name, source, digests) for name in KEY_FILES}
    for name, text in keys.items():
        if not _is_key(text):
            raise InvalidInput(f"{str(source)!r} holds a damaged {name}")
    staged = data_dir / (DATABASE_FILE + ".restoring")
    written.append(staged)
    with _new_private(staged) as out:
        digest = hashlib.sha256()
        with _member(tar, DATABASE_FILE, source) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    if digest.hexdigest() != digests.get(DATABASE_FILE):
        raise InvalidInput(f"{str(source)!r} is damaged: {DATABASE_FILE} does not match its digest")
    _check_database(staged, int(manifest["schema_version"]), source)
    for name, text in keys.items():
        written.append(data_dir / name)
        with _new_private(data_dir / name) as out:
            out.write(text)
    written.append(data_dir / DATABASE_FILE)
    os.replace(staged, data_dir / DATABASE_FILE)  # last: a roost.db marks a whole data dir


def _open_backup(source: Path) -> tarfile.TarFile:
    if not source.is_file():
        raise NotFound(f"backup {str(source)!r} does not exist")
    try:
        return tarfile.open(source, mode="r:gz")
    except (tarfile.TarError, EOFError, zlib.error, OSError):
        raise InvalidInput(f"{str(source)!r} is not a Roost backup") from None


def _manifest(tar: tarfile.TarFile, source: Path) -> dict[str, Any]:
    shown = str(source)
    try:
        manifest = json.loads(_member_bytes(tar, MANIFEST, source, None))
    except (ValueError, InvalidInput):
        raise InvalidInput(f"{shown!r} is not a Roost backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{shown!r} is not a Roost backup")
    made_by = manifest.get("roost", "?")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{shown!r} is a backup in a format this Roost does not know (made by Roost "
            f"{made_by}); restore it with that Roost or a newer one"
        )
    version, digests = manifest.get("schema_version"), manifest.get("sha256")
    if not isinstance(version, int) or version < 1 or not isinstance(digests, dict):
        raise InvalidInput(f"{shown!r} is not a Roost backup (its manifest is damaged)")
    latest = load_migrations()[-1].version
    if version > latest:
        raise InvalidInput(
            f"{shown!r} holds schema version {version}, newer than this Roost knows ({latest}); "
            f"restore it with Roost {made_by} or a newer one"
        )
    return manifest


def _check_database(path: Path, expected: int, source: Path) -> None:
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        version = current_version(conn)
        ok = conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    except sqlite3.Error:
        version, ok = -1, False
    finally:
        conn.close()
    if not ok or version != expected:
        raise InvalidInput(f"{str(source)!r} is damaged: its database is not the one described")


@contextlib.contextmanager
def _member(tar: tarfile.TarFile, name: str, source: Path) -> Iterator[IO[bytes]]:
    try:
        info = tar.getmember(name)
        fh = tar.extractfile(info) if info.isfile() else None
    except KeyError:
        fh = None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidInput(f"{str(source)!r} is damaged ({exc})") from None
    if fh is None:
        raise InvalidInput(f"{str(source)!r} is damaged: no {name} in it")
    try:
        yield fh
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"{str(source)!r} is damaged ({exc})") from None
    finally:
        fh.close()


def _member_bytes(
    tar: tarfile.TarFile, name: str, source: Path, digests: dict[str, str] | None
) -> bytes:
    with _member(tar, name, source) as fh:
        data = fh.read(_SMALL_MEMBER + 1)
    if len(data) > _SMALL_MEMBER:
        raise InvalidInput(f"{str(source)!r} is not a Roost backup ({name} is too large)")
    if digests is not None and _sha256(data) != digests.get(name):
        raise InvalidInput(f"{str(source)!r} is damaged: {name} does not match its digest")
    return data


def _add(tar: tarfile.TarFile, name: str, fh: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = FILE_MODE
    info.mtime = int(time.time())
    tar.addfile(info, fh)


@contextlib.contextmanager
def _new_private(path: Path) -> Iterator[IO[bytes]]:
    """A new file, owner-only from its creation, synced to disk when the block ends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        yield out
        out.flush()
        os.fsync(out.fileno())


def _key_text(path: Path) -> bytes:
    if not path.is_file():
        raise NotFound(f"key file {str(path)!r} does not exist")
    text = path.read_bytes()
    if not _is_key(text):
        raise InvalidInput(f"key file {str(path)!r} is damaged")
    return text


def _is_key(text: bytes) -> bool:
    try:
        return len(bytes.fromhex(text.decode("ascii").strip())) >= 32
    except ValueError:  # UnicodeDecodeError included
        return False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
