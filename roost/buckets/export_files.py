"""The files of bucket exports (:mod:`roost.buckets.exports`), for its worker threads: the
owner-only dirs and files, each export's sidecar record (``.<file>.meta``, JSON, replaced whole),
the spool of a tabular export, and what a stop or a deletion leaves to clean up. Blocking calls,
made through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from roost.buckets.export_formats import Columns, Format

DIR_MODE, FILE_MODE = 0o700, 0o600
RUNNING, COMPLETED, FAILED = "running", "completed", "failed"
PAGE = 1000  # points read from the store, or from a spool, at a time


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


def private_dirs(root: Path, folder: Path) -> None:
    """``root`` and every dir below it to ``folder``, each created owner-only (a parent made by
    ``mkdir(parents=True)`` would take the umask's mode)."""
    path = root
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    for name in folder.relative_to(root).parts:
        path = path / name
        path.mkdir(mode=DIR_MODE, exist_ok=True)


def create(path: Path) -> IO[str]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    return os.fdopen(fd, "w", encoding="utf-8", newline="")


def sync(out: IO[str]) -> None:
    out.flush()
    os.fsync(out.fileno())


def spool(out: IO[str], page: list[tuple[int, Any]], columns: Columns) -> None:
    for _, value in page:
        columns.see(value)
    out.write("".join(json.dumps(point, separators=(",", ":")) + "\n" for point in page))


def write_page(out: IO[str], writer: Format, page: list[tuple[int, Any]]) -> None:
    out.write(writer.page(page))


def unspool(spooled: IO[str]) -> list[tuple[int, Any]]:
    page = []
    for line in spooled:
        ts, value = json.loads(line)
        page.append((ts, value))
        if len(page) == PAGE:
            break
    return page


def _meta(folder: Path, file: str) -> Path:
    return folder / f".{file}.meta"


def write_record(folder: Path, record: ExportRecord) -> None:
    """The sidecar, replaced whole (written aside, then renamed)."""
    target = _meta(folder, record.file)
    aside = target.with_name(target.name + ".new")
    with create(aside) as out:
        out.write(json.dumps(record.json()))
    aside.replace(target)


def prepare(root: Path, folder: Path, record: ExportRecord) -> None:
    private_dirs(root, folder)
    write_record(folder, record)


def read_record(folder: Path, file: str) -> ExportRecord | None:
    try:
        text = _meta(folder, file).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return ExportRecord(**json.loads(text))


def records(folder: Path) -> list[ExportRecord]:
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith(".") and name.endswith(".meta"):
            record = read_record(folder, name[1 : -len(".meta")])
            if record is not None:
                found.append(record)
    return sorted(found, key=lambda r: (r.created, r.file))


def fail(folder: Path, record: ExportRecord, error: str, now: int) -> None:
    for leftover in (f".{record.file}.part", f".{record.file}.spool"):
        (folder / leftover).unlink(missing_ok=True)
    if _meta(folder, record.file).exists():  # not deleted meanwhile
        failed = dataclasses.replace(record, status=FAILED, completed=now, error=error)
        write_record(folder, failed)


def remove(folder: Path, file: str) -> bool:
    meta = _meta(folder, file)
    existed = meta.exists()
    for path in (folder / file, folder / f".{file}.part", folder / f".{file}.spool"):
        path.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)
    return existed


def recover(root: Path, now: int) -> None:
    if not root.is_dir():
        return
    for folder in root.glob("*/*"):
        for record in records(folder):
            if record.status == RUNNING:
                fail(folder, record, "interrupted: the server stopped", now)
        for name in os.listdir(folder):
            if name.startswith(".") and name.endswith((".part", ".spool", ".new")):
                with contextlib.suppress(FileNotFoundError):
                    (folder / name).unlink()
