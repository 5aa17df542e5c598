"""Bucket exports (thinger-api.md 2.10): a bucket's points written to a file in the background,
then announced as ``bucket_export_completed`` on the bus.

Files live in ``<data dir>/exports/<user>/<bucket>/``, owner-only (dirs 0700, files 0600), named
as Thinger names them: ``<UTC time>.<user>.<bucket>.<nonce>.<type>``
(:data:`roost.ids.EXPORT_FILE`). Beside each, a hidden sidecar ``.<file>.meta`` (JSON) holds its
record (:class:`ExportRecord`): what was asked, its status (running, completed, failed), when,
how many points and bytes. The data is written to ``.<file>.part`` and renamed into place once
complete, so a file that can be downloaded is always whole; names that start with ``.`` are never
export names, so nothing but an export is ever served.

Points are read from the store a page at a time (:data:`PAGE` points, ts order, the next page
from the last ts + 1): never the whole bucket in memory. JSON is written as it is read. CSV and
ARFF need every field name for their header first: the one pass over the store spools the points
to ``.<file>.spool`` (a JSON line each) while collecting the field names, then the spool is read
back, a page at a time, into the file: one consistent snapshot, the store read once.

At most ``max_exports_running`` exports run at once (more wait their turn), a user may have at
most ``max_exports_per_user`` running or waiting, and a bucket keep at most
``max_exports_per_bucket`` files (more are refused: delete some). Deleting a bucket deletes its
exports (:meth:`BucketExports.forget_bucket`). An export cut short by a stop of the server is
marked failed at the next start, its partial files removed (:meth:`BucketExports.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from roost import ids
from roost.buckets.export_formats import ArffFormat, Columns, CsvFormat, JsonFormat
from roost.bus import events
from roost.bus.base import Bus
from roost.config import Settings
from roost.errors import Conflict, NotFound, RoostError
from roost.store.base import Store

log = logging.getLogger("roost.exports")

PAGE = 1000  # points read from the store at a time
MAX_COLUMNS = 1000  # fields of a CSV or ARFF export
DIR_MODE, FILE_MODE = 0o700, 0o600
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
EXPORTS_DIR = "exports"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    data_type: str  # roost.buckets.export_formats.DATA_TYPES
    timestamp_format: str  # TIMESTAMP_FORMATS
    min_ts: int  # ms, inclusive; 0: no bound
    max_ts: int


@dataclass(frozen=True, slots=True)
class ExportRecord:
    file: str
    bucket: str
    data_type: str
    timestamp_format: str
    min_ts: int
    max_ts: int
    created: int  # ms
    status: str = RUNNING
    completed: int | None = None  # ms
    points: int = 0
    size: int = 0  # bytes
    error: str | None = None

    def json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def export_name(owner: str, bucket: str, data_type: str, now_s: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_s))
    return f"{stamp}.{owner}.{bucket}.{secrets.token_urlsafe(6)}.{data_type}"


def export_url(owner: str, bucket: str, file: str) -> str:
    """As a private Thinger server announces it (Node-RED makes it the download route)."""
    return f"file://users/{owner}/buckets/{bucket}/{file}"


class BucketExports:
    """The exports of every bucket of this server, and the tasks writing them."""

    def __init__(
        self, store: Store, bus: Bus, settings: Settings, clock: Callable[[], float]
    ) -> None:
        self._store, self._bus, self._clock = store, bus, clock
        self._root = settings.data_dir / EXPORTS_DIR
        self._per_user = settings.max_exports_per_user
        self._per_bucket = settings.max_exports_per_bucket
        self._slots = asyncio.Semaphore(max(settings.max_exports_running, 1))
        self._jobs: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _dir(self, owner: str, bucket: str) -> Path:
        return self._root / ids.validate(ids.USER, owner) / ids.validate(ids.BUCKET, bucket)

    # ---- the API's operations --------------------------------------------------------------

    async def create(self, owner: str, bucket: str, request: ExportRequest) -> ExportRecord:
        """Starts an export of the bucket; its record, status running. NotFound without the
        bucket, Conflict over the limits."""
        if await self._store.get_bucket(owner, bucket) is None:
            raise NotFound(f"bucket {bucket!r} not found")
        mine = sum(1 for user, _, _ in self._jobs if user == owner)
        if mine >= self._per_user:
            raise Conflict(
                f"{mine} exports of user {owner!r} are running (at most {self._per_user}):"
                " wait for one to complete"
            )
        folder = self._dir(owner, bucket)
        kept = await asyncio.to_thread(_records, folder)
        if len(kept) >= self._per_bucket:
            raise Conflict(
                f"bucket {bucket!r} holds {len(kept)} exports (at most {self._per_bucket}):"
                " delete some first"
            )
        now = self._clock()
        record = ExportRecord(
            file=export_name(owner, bucket, request.data_type, now),
            bucket=bucket,
            data_type=request.data_type,
            timestamp_format=request.timestamp_format,
            min_ts=request.min_ts,
            max_ts=request.max_ts,
            created=int(now * 1000),
        )
        await asyncio.to_thread(_prepare, self._root, folder, record)
        key = (owner, bucket, record.file)
        task = asyncio.get_running_loop().create_task(self._run(owner, folder, record))
        self._jobs[key] = task
        task.add_done_callback(lambda _: self._jobs.pop(key, None))
        return record

    async def list_exports(self, owner: str, bucket: str) -> list[ExportRecord]:
        """The bucket's exports (running, completed or failed), oldest first."""
        if await self._store.get_bucket(owner, bucket) is None:
            raise NotFound(f"bucket {bucket!r} not found")
        return await asyncio.to_thread(_records, self._dir(owner, bucket))

    async def open(self, owner: str, bucket: str, file: str) -> tuple[ExportRecord, IO[bytes]]:
        """A completed export and its file, open for reading; NotFound otherwise."""
        folder = self._dir(owner, bucket)
        record = await asyncio.to_thread(_read_record, folder, ids.validate(ids.EXPORT_FILE, file))
        if record is None:
            raise NotFound(f"export {file!r} not found")
        if record.status != COMPLETED:
            raise NotFound(f"export {file!r} is {record.status}, not ready")
        try:
            return record, await asyncio.to_thread(open, folder / file, "rb")
        except FileNotFoundError:  # deleted meanwhile
            raise NotFound(f"export {file!r} not found") from None

    async def delete(self, owner: str, bucket: str, file: str) -> None:
        """Deletes an export (stopping it if it runs); NotFound if there is none."""
        folder = self._dir(owner, bucket)
        file = ids.validate(ids.EXPORT_FILE, file)
        await self._stop_jobs(lambda key: key == (owner, bucket, file))
        if not await asyncio.to_thread(_remove, folder, file):
            raise NotFound(f"export {file!r} not found")

    async def forget_bucket(self, owner: str, bucket: str) -> None:
        """The bucket was deleted: so are its exports, running or not."""
        await self._stop_jobs(lambda key: key[:2] == (owner, bucket))
        await asyncio.to_thread(shutil.rmtree, self._dir(owner, bucket), True)

    # ---- start and stop --------------------------------------------------------------------

    async def recover(self) -> None:
        """At start: exports a previous run left running are marked failed, their partial files
        removed."""
        await asyncio.to_thread(_recover, self._root, self._now_ms())

    async def close(self) -> None:
        """At stop: running exports are cancelled (and marked failed)."""
        await self._stop_jobs(lambda key: True)

    async def _stop_jobs(self, which: Callable[[tuple[str, str, str]], bool]) -> None:
        tasks = [task for key, task in self._jobs.items() if which(key)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- the work --------------------------------------------------------------------------

    async def _run(self, owner: str, folder: Path, record: ExportRecord) -> None:
        try:
            async with self._slots:
                points = await self._write(owner, folder, record)
        except asyncio.CancelledError:
            await asyncio.to_thread(_fail, folder, record, "cancelled", self._now_ms())
            raise
        except (RoostError, ValueError) as exc:
            log.warning("export %s of %s failed: %s", record.file, owner, exc)
            await asyncio.to_thread(_fail, folder, record, str(exc), self._now_ms())
            return
        except Exception:
            log.exception("export %s of %s failed", record.file, owner)
            await asyncio.to_thread(_fail, folder, record, "internal error", self._now_ms())
            return
        size = (folder / record.file).stat().st_size
        done = dataclasses.replace(
            record, status=COMPLETED, completed=self._now_ms(), points=points, size=size
        )
        await asyncio.to_thread(_write_record, folder, done)
        self._bus.publish(
            events.bucket_export_completed(
                owner,
                record.bucket,
                self._now_ms(),
                file=record.file,
                data_type=record.data_type,
                timestamp_format=record.timestamp_format,
                min_ts=record.min_ts,
                max_ts=record.max_ts,
                url=export_url(owner, record.bucket, record.file),
            )
        )
        log.info("exported %d points of %s/%s to %s", points, owner, record.bucket, record.file)

    async def _pages(
        self, owner: str, record: ExportRecord
    ) -> AsyncIterator[list[tuple[int, Any]]]:
        low, high = record.min_ts or None, record.max_ts or None
        while True:
            page = await self._store.read_points(owner, record.bucket, low, high, PAGE)
            if page:
                yield [(point.ts, point.value) for point in page]
            if len(page) < PAGE:
                return
            low = page[-1].ts + 1

    async def _write(self, owner: str, folder: Path, record: ExportRecord) -> int:
        """Writes the export's file; how many points it holds."""
        part = folder / f".{record.file}.part"
        count = 0
        with _create(part) as out:
            if record.data_type == "json":
                writer = JsonFormat(record.timestamp_format)
                out.write(writer.start())
                async for page in self._pages(owner, record):
                    await asyncio.to_thread(out.write, writer.page(page))
                    count += len(page)
                out.write(writer.end())
            else:
                count = await self._write_tabular(owner, folder, record, out)
            await asyncio.to_thread(_sync, out)
        part.rename(folder / record.file)
        return count

    async def _write_tabular(
        self, owner: str, folder: Path, record: ExportRecord, out: IO[str]
    ) -> int:
        spool = folder / f".{record.file}.spool"
        columns = Columns(MAX_COLUMNS)
        count = 0
        try:
            with _create(spool) as spooled:
                async for page in self._pages(owner, record):
                    await asyncio.to_thread(_spool, spooled, page, columns)
                    count += len(page)
            if record.data_type == "csv":
                writer: CsvFormat | ArffFormat = CsvFormat(record.timestamp_format, columns)
            else:
                writer = ArffFormat(record.timestamp_format, columns, record.bucket)
            out.write(writer.start())
            with spool.open(encoding="utf-8") as spooled:
                while page := await asyncio.to_thread(_unspool, spooled):
                    await asyncio.to_thread(out.write, writer.page(page))
            out.write(writer.end())
        finally:
            spool.unlink(missing_ok=True)
        return count


# ---- files (run in worker threads) ----------------------------------------------------------


def _private_dirs(root: Path, folder: Path) -> None:
    """``root`` and every dir below it to ``folder``, each created owner-only (a parent made by
    ``mkdir(parents=True)`` would take the umask's mode)."""
    path = root
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    for name in folder.relative_to(root).parts:
        path = path / name
        path.mkdir(mode=DIR_MODE, exist_ok=True)


def _create(path: Path) -> IO[str]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def _sync(out: IO[str]) -> None:
    out.flush()
    os.fsync(out.fileno())


def _spool(out: IO[str], page: list[tuple[int, Any]], columns: Columns) -> None:
    for _, value in page:
        columns.see(value)
    out.write("".join(json.dumps(point, separators=(",", ":")) + "\n" for point in page))


def _unspool(spooled: IO[str]) -> list[tuple[int, Any]]:
    page = []
    for line in spooled:
        ts, value = json.loads(line)
        page.append((ts, value))
        if len(page) == PAGE:
            break
    return page


def _meta(folder: Path, file: str) -> Path:
    return folder / f".{file}.meta"


def _write_record(folder: Path, record: ExportRecord) -> None:
    """The sidecar, replaced whole (written aside, then renamed)."""
    target = _meta(folder, record.file)
    aside = target.with_name(target.name + ".new")
    with _create(aside) as out:
        out.write(json.dumps(record.json()))
    aside.replace(target)


def _prepare(root: Path, folder: Path, record: ExportRecord) -> None:
    _private_dirs(root, folder)
    _write_record(folder, record)


def _read_record(folder: Path, file: str) -> ExportRecord | None:
    try:
        text = _meta(folder, file).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return ExportRecord(**json.loads(text))


def _records(folder: Path) -> list[ExportRecord]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith(".") and name.endswith(".meta"):
            record = _read_record(folder, name[1 : -len(".meta")])
            if record is not None:
                found.append(record)
    return sorted(found, key=lambda r: (r.created, r.file))


def _fail(folder: Path, record: ExportRecord, error: str, now: int) -> None:
    for leftover in (f".{record.file}.part", f".{record.file}.spool"):
        (folder / leftover).unlink(missing_ok=True)
    if _meta(folder, record.file).exists():  # not deleted meanwhile
        failed = dataclasses.replace(record, status=FAILED, completed=now, error=error)
        _write_record(folder, failed)


def _remove(folder: Path, file: str) -> bool:
    meta = _meta(folder, file)
    existed = meta.exists()
    for path in (folder / file, folder / f".{file}.part", folder / f".{file}.spool"):
        path.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)
    return existed


def _recover(root: Path, now: int) -> None:
    if not root.is_dir():
        return
    for folder in root.glob("*/*"):
        for record in _records(folder):
            if record.status == RUNNING:
                _fail(folder, record, "interrupted: the server stopped", now)
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith((".part", ".spool", ".new")):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
