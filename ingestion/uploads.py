"""Uploaded files: checked, then kept under the data folder until (and after) indexing.

Every file of a request is checked and written to a temporary name first; only when all
pass are they moved into place, so a rejected request changes nothing.

What is kept, and for how long:
- an indexed upload keeps its stored original (re-indexing reads it) until it is deleted;
- a deleted document's original goes with it;
- a failed upload's file is kept DOCQA_INGESTION__FAILED_UPLOAD_RETENTION_H hours to look
  into, then deleted (its record and error stay); files no record names go after as long;
- staging folders a crash left behind are removed at start.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

from docqa.db import utcnow
from docqa.domain import DEFAULT_COLLECTION, DocumentStatus, document_id_for
from docqa.errors import DocqaError, FileTooLarge, UnsupportedFileType
from docqa.settings import Settings
from ingestion.jobs import JobRunner, JobStore, UploadItem
from ingestion.parse import file_type_of, supported_extensions
from ingestion.records import RecordStore

_COPY_BLOCK = 1 << 20
STAGING_PREFIX = ".incoming-"


@dataclass
class IncomingFile:
    filename: str | None
    stream: BinaryIO


def clean_filename(raw: str | None) -> str:
    """The file's own name, without any client-side folders or control characters."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").split("/")[-1])
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if name in ("", ".", ".."):
        raise DocqaError("every uploaded file needs a file name", param="files")
    return _fit_bytes(name, _MAX_NAME_BYTES)


# File systems cap a name at 255 bytes, not characters: 202 two-byte letters once made the
# upload fail with a 500. Longer names are shortened, keeping their extension.
_MAX_NAME_BYTES = 240


def _fit_bytes(name: str, limit: int) -> str:
    if len(name.encode("utf-8")) <= limit:
        return name
    suffix = Path(name).suffix
    if len(suffix.encode("utf-8")) > 16:
        suffix = ""
    stem = name[: len(name) - len(suffix)] if suffix else name
    room = limit - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip()
    return cut + suffix


def accept_uploads(
    settings: Settings,
    files: list[IncomingFile],
    *,
    collection: str = DEFAULT_COLLECTION,
    then: Callable[[list[UploadItem]], object] | None = None,
) -> list[UploadItem]:
    """Validate and store uploads for `collection`; returns what to index.

    Every file is staged first; then all are moved into place and `then` (recording the
    upload, `queue_upload`) runs. If a move or `then` fails, every file is put back as it
    was (a replaced original restored, a new file removed) and the error propagates: a
    rejected request changes nothing.

    :raises DocqaError: no files, too many, a name missing or given twice (400);
    :raises UnsupportedFileType: an extension docqa cannot parse (415);
    :raises FileTooLarge: a file over the upload limit (413).
    """
    if not files:
        raise DocqaError("no files in the upload; send one or more `files` parts", param="files")
    limit = settings.api.max_files_per_upload
    if len(files) > limit:
        raise DocqaError(
            f"{len(files)} files in one upload; the limit is {limit} "
            "(DOCQA_API__MAX_FILES_PER_UPLOAD)",
            param="files",
        )
    names = [clean_filename(f.filename) for f in files]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DocqaError(
            f"{', '.join(map(repr, twice))} given more than once in one upload; a file name "
            "names one document",
            param="files",
        )
    unsupported = [n for n in names if file_type_of(Path(n)) is None]
    if unsupported:
        raise UnsupportedFileType(
            f"cannot index {', '.join(repr(n) for n in unsupported)}: unsupported file type. "
            f"Supported: {' '.join(supported_extensions())}",
            param="files",
        )
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=settings.uploads_dir))
    try:
        staged = [
            _stage(f.stream, staging / f"{n:04d}", name, settings.api.max_upload_mb)
            for n, (f, name) in enumerate(zip(files, names, strict=True))
        ]
        placed: list[tuple[Path, Path | None]] = []  # (destination, what it replaced)
        try:
            items = []
            for n, (name, tmp) in enumerate(zip(names, staged, strict=True)):
                document_id = document_id_for(name, collection)
                dest = settings.uploads_dir / document_id / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                backup = None
                if dest.exists():
                    backup = staging / f"replaced-{n:04d}"
                    dest.replace(backup)
                placed.append((dest, backup))
                tmp.replace(dest)
                items.append(UploadItem(document_id, name, dest.resolve(), collection))
            if then is not None:
                then(items)
            return items
        except BaseException:
            for dest, backup in reversed(placed):
                dest.unlink(missing_ok=True)
                if backup is not None:
                    backup.replace(dest)
                else:
                    with contextlib.suppress(OSError):
                        dest.parent.rmdir()
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def queue_upload(
    records: RecordStore, jobs: JobStore, runner: JobRunner, job_id: str, items: list[UploadItem]
) -> None:
    """Record uploads as queued, create their job and hand it to the runner, all or none:
    on an error the records are put back as they were and the job is removed."""
    before = {item.document_id: records.get(item.document_id) for item in items}
    try:
        for item in items:
            records.mark_queued(
                item.document_id,
                source=item.source,
                file_type=item.path.suffix.lstrip(".").lower(),
                stored_path=str(item.path),
            )
        jobs.create(
            job_id,
            [i.document_id for i in items],
            backend=runner.backend,
            collection=records.collection,
        )
        runner.submit(job_id, items)
    except BaseException:
        # Best effort: the store that just failed may refuse the undo too.
        with contextlib.suppress(Exception):
            jobs.delete(job_id)
            for document_id, record in before.items():
                records.put_back(document_id, record)
        raise


def _stage(stream: BinaryIO, tmp: Path, name: str, max_mb: float) -> Path:
    limit = int(max_mb * 1024 * 1024)
    size = 0
    with tmp.open("wb") as out:
        while block := stream.read(_COPY_BLOCK):
            size += len(block)
            if size > limit:
                raise FileTooLarge(
                    f"{name!r} is over the {max_mb:g} MiB upload limit (DOCQA_API__MAX_UPLOAD_MB)",
                    param="files",
                )
            out.write(block)
    if size == 0:
        raise DocqaError(f"{name!r} is empty (0 bytes)", param="files")
    return tmp


def remove_stored_upload(uploads_dir: Path, stored_path: str | None) -> bool:
    """Delete an upload's stored copy and its folder, only when it lies under the uploads
    folder (a document read from a source folder is never touched); returns whether a
    file went."""
    if not stored_path:
        return False
    uploads = uploads_dir.resolve()
    path = Path(stored_path).resolve()
    if path == uploads or not path.is_relative_to(uploads) or path.name.startswith("."):
        return False
    existed = path.is_file()
    path.unlink(missing_ok=True)
    if path.parent != uploads:
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty
    return existed


@dataclass
class UploadsSweep:
    failed_removed: int = 0
    unreferenced_removed: int = 0
    staging_removed: int = 0


def sweep_uploads(
    records: RecordStore,
    uploads_dir: Path,
    *,
    retention_h: float,
    staging_older_than_s: float | None = None,
) -> UploadsSweep:
    """Remove what the uploads folder no longer needs to keep: failed uploads' files past
    the retention, files no record names past the retention, and (when
    `staging_older_than_s` is given) staging folders untouched that long."""
    report = UploadsSweep()
    if not uploads_dir.is_dir():
        return report
    cutoff = utcnow() - timedelta(hours=retention_h)
    # The uploads folder is shared by every collection: each one's failed uploads expire.
    for collection in records.collections():
        store = (
            records if collection == records.collection else RecordStore(records.url, collection)
        )
        for record in store.list(status=DocumentStatus.FAILED):
            expired = record.updated_at is not None and record.updated_at <= cutoff
            if record.stored_path and expired:
                if remove_stored_upload(uploads_dir, record.stored_path):
                    report.failed_removed += 1
                store.forget_stored_path(record.document_id, record.stored_path)
    named = {str(Path(p).resolve()) for p in records.stored_paths()}
    oldest = time.time() - retention_h * 3600
    for path in uploads_dir.glob("*/*"):
        if path.parent.name.startswith(".") or not path.is_file():
            continue
        if str(path.resolve()) not in named and path.stat().st_mtime <= oldest:
            if remove_stored_upload(uploads_dir, str(path)):
                report.unreferenced_removed += 1
    if staging_older_than_s is not None:
        for staging in uploads_dir.glob(STAGING_PREFIX + "*"):
            if _newest_mtime(staging) <= time.time() - staging_older_than_s:
                shutil.rmtree(staging, ignore_errors=True)
                report.staging_removed += 1
    return report


class UploadsJanitor:
    """`sweep_uploads` at most every `every_s` seconds (after each job, say): the
    retention is counted in hours, and a sweep reads every stored path."""

    def __init__(
        self, records: RecordStore, uploads_dir: Path, *, retention_h: float, every_s: float = 600
    ) -> None:
        self.records = records
        self.uploads_dir = uploads_dir
        self.retention_h = retention_h
        self.every_s = every_s
        self._last = float("-inf")

    def maybe_sweep(self) -> UploadsSweep | None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return None
        self._last = now
        return sweep_uploads(self.records, self.uploads_dir, retention_h=self.retention_h)


def _newest_mtime(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    with contextlib.suppress(OSError):
        times += [p.stat().st_mtime for p in folder.iterdir()]
    return max(times)
