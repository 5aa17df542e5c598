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
import dataclasses
import logging
import secrets
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from roost import ids
from roost.buckets import export_files as files
from roost.buckets.export_files import COMPLETED, PAGE, ExportRecord
from roost.buckets.export_formats import ArffFormat, Columns, CsvFormat, JsonFormat
from roost.bus import events
from roost.bus.base import Bus
from roost.config import Settings
from roost.errors import Conflict, NotFound, RoostError
from roost.store.base import Store

log = logging.getLogger("roost.exports")

MAX_COLUMNS = 1000  # fields of a CSV or ARFF export
EXPORTS_DIR = "exports"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    data_type: str  # roost.buckets.export_formats.DATA_TYPES
    timestamp_format: str  # TIMESTAMP_FORMATS
    min_ts: int  # ms, inclusive; 0: no bound
    max_ts: int


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
        self._active: Counter[str] = Counter()  # exports running or waiting, by user
        self._closed = False  # the server is stopping: no new export

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
        if self._closed:
            raise Conflict("the server is stopping: export later")
        mine = self._active[owner]  # counted before any await: concurrent requests see it
        if mine >= self._per_user:
            raise Conflict(
                f"{mine} exports of user {owner!r} are running (at most {self._per_user}):"
                " wait for one to complete"
            )
        self._active[owner] += 1
        try:
            folder = self._dir(owner, bucket)
            record = await self._new_record(owner, bucket, folder, request)
            if await self._store.get_bucket(owner, bucket) is None:  # deleted meanwhile
                await asyncio.to_thread(files.remove, folder, record.file)
                raise NotFound(f"bucket {bucket!r} not found")
        except BaseException:
            self._release(owner)
            raise
        key = (owner, bucket, record.file)
        task = asyncio.get_running_loop().create_task(self._run(owner, folder, record))
        self._jobs[key] = task

        def ended(_: asyncio.Task[None]) -> None:
            self._jobs.pop(key, None)
            self._release(owner)

        task.add_done_callback(ended)
        return record

    def _release(self, owner: str) -> None:
        self._active[owner] -= 1
        if self._active[owner] <= 0:
            del self._active[owner]

    async def _new_record(
        self, owner: str, bucket: str, folder: Path, request: ExportRequest
    ) -> ExportRecord:
        kept = await asyncio.to_thread(files.records, folder)
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
        await asyncio.to_thread(files.prepare, self._root, folder, record)
        return record

    async def list_exports(self, owner: str, bucket: str) -> list[ExportRecord]:
        """The bucket's exports (running, completed or failed), oldest first."""
        if await self._store.get_bucket(owner, bucket) is None:
            raise NotFound(f"bucket {bucket!r} not found")
        return await asyncio.to_thread(files.records, self._dir(owner, bucket))

    async def open(self, owner: str, bucket: str, file: str) -> tuple[ExportRecord, IO[bytes]]:
        """A completed export and its file, open for reading; NotFound otherwise."""
        folder = self._dir(owner, bucket)
        record = await asyncio.to_thread(
            files.read_record, folder, ids.validate(ids.EXPORT_FILE, file)
        )
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
        if not await asyncio.to_thread(files.remove, folder, file):
            raise NotFound(f"export {file!r} not found")

    async def forget_bucket(self, owner: str, bucket: str) -> None:
        """The bucket was deleted: so are its exports, running or not."""
        await self._stop_jobs(lambda key: key[:2] == (owner, bucket))
        await asyncio.to_thread(shutil.rmtree, self._dir(owner, bucket), True)

    # ---- start and stop --------------------------------------------------------------------

    async def recover(self) -> None:
        """At start: exports a previous run left running are marked failed, their partial files
        removed."""
        await asyncio.to_thread(files.recover, self._root, self._now_ms())

    async def close(self) -> None:
        """At stop: running exports are cancelled (and marked failed), new ones refused."""
        self._closed = True
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
            await asyncio.to_thread(files.fail, folder, record, "cancelled", self._now_ms())
            raise
        except RoostError as exc:  # more fields than a CSV holds, say
            log.warning("export %s of %s failed: %s", record.file, owner, exc)
            await asyncio.to_thread(files.fail, folder, record, str(exc), self._now_ms())
            return
        except Exception:
            log.exception("export %s of %s failed", record.file, owner)
            await asyncio.to_thread(files.fail, folder, record, "internal error", self._now_ms())
            return
        size = (folder / record.file).stat().st_size
        done = dataclasses.replace(
            record, status=COMPLETED, completed=self._now_ms(), points=points, size=size
        )
        await asyncio.to_thread(files.write_record, folder, done)
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
        with files.create(part) as out:
            if record.data_type == "json":
                writer = JsonFormat(record.timestamp_format)
                out.write(writer.start())
                async for page in self._pages(owner, record):
                    await asyncio.to_thread(files.write_page, out, writer, page)
                    count += len(page)
                out.write(writer.end())
            else:
                count = await self._write_tabular(owner, folder, record, out)
            await asyncio.to_thread(files.sync, out)
        part.rename(folder / record.file)
        return count

    async def _write_tabular(
        self, owner: str, folder: Path, record: ExportRecord, out: IO[str]
    ) -> int:
        spool = folder / f".{record.file}.spool"
        columns = Columns(MAX_COLUMNS)
        count = 0
        try:
            with files.create(spool) as spooled:
                async for page in self._pages(owner, record):
                    await asyncio.to_thread(files.spool, spooled, page, columns)
                    count += len(page)
            if record.data_type == "csv":
                writer: CsvFormat | ArffFormat = CsvFormat(record.timestamp_format, columns)
            else:
                writer = ArffFormat(record.timestamp_format, columns, record.bucket)
            out.write(writer.start())
            with spool.open(encoding="utf-8") as spooled:
                while page := await asyncio.to_thread(files.unspool, spooled):
                    await asyncio.to_thread(files.write_page, out, writer, page)
            out.write(writer.end())
        finally:
            spool.unlink(missing_ok=True)
        return count
